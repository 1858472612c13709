"""What every SQL target shares: the guarded-upsert and table-definition builders, and the
status queries over the ``_hiwater_*`` tables. SQLite, PostgreSQL and DuckDB subclass
:class:`SqlTarget`; a target that is not SQL (Delta) implements :class:`~.base.Target` directly.
"""

from __future__ import annotations

import re

from .base import CURSOR_COL, RUN_COL, LegacyTarget

# Columns the history gained after its first release (name -> logical type): each SQL target
# adds them to an older history table when it first opens it.
HISTORY_ADDED = {"duration_s": "real", "error": "text"}


def decimal_sql(logical: str, default: str = "DECIMAL(38,10)") -> str:
    """``DECIMAL(P,S)`` for a constrained decimal logical type."""
    m = re.fullmatch(r"decimal\((\d+),(\d+)\)", logical)
    return f"DECIMAL({m.group(1)},{m.group(2)})" if m else default


def guard_sql(new: str, old: str, refresh_columns: list | None = None, distinct: str = "IS DISTINCT FROM") -> str:
    """The upsert's guard (pure): a row is replaced only by a newer cursor, or by the same
    cursor written earlier in this run (the later record of a tie wins). With
    ``refresh_columns`` (a full load) also by the same cursor with different content, so a
    source that changes a row without growing its cursor is still applied; identical rows
    are left alone. ``new``/``old`` are the row prefixes (``EXCLUDED.``, ``t.``)."""
    cur, run = quote_plain(CURSOR_COL), quote_plain(RUN_COL)
    same = f"{new}{cur} = {old}{cur}"
    tie = f"{new}{run} = {old}{run}"
    if refresh_columns:
        tie += "".join(f" OR {old}{quote_plain(c)} {distinct} {new}{quote_plain(c)}" for c in refresh_columns)
    return f"{new}{cur} > {old}{cur} OR ({same} AND ({tie}))"


def quote_plain(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def table_definition(columns: dict, key: tuple, quote, type_of, int_type: str) -> str:
    """The column list of a new data table (pure): the user's columns typed by ``type_of(name,
    logical)``, the two hidden columns as ``int_type``, and the primary key."""
    defs = [f"{quote(c)} {type_of(c, t)}".rstrip() for c, t in columns.items()]
    defs += [f"{quote(CURSOR_COL)} {int_type} NOT NULL", f"{quote(RUN_COL)} {int_type} NOT NULL",
             f"PRIMARY KEY ({', '.join(quote(k) for k in key)})"]
    return ", ".join(defs)


class SqlTarget(LegacyTarget):
    """A target spoken to in SQL: ``_hiwater_*`` meta tables, a driver placeholder, and helpers
    each dialect implements (``_has_meta``, ``_dicts``)."""

    placeholder = "?"  # the driver's parameter mark

    def meta_name(self, name: str) -> str:
        """A ``_hiwater_*`` table's name as this target's SQL writes it (qualified, quoted)."""
        return name

    def stream_facts(self, stream: str) -> dict:
        """What ``hiwater status`` shows beside the state: the latest run's history rows, when the
        latest successful run finished, and how many records are in the quarantine."""
        from .metaquery import last_run_query, last_success_query, quarantine_count_query
        if not self._has_meta():
            return {"last_run": [], "last_success_at": None, "quarantined": 0}
        h, q, ph = self.meta_name("_hiwater_history"), self.meta_name("_hiwater_quarantine"), self.placeholder
        return {"last_run": self._dicts(*last_run_query(h, ph, stream)),
                "last_success_at": self._dicts(*last_success_query(h, ph, stream))[0]["at"],
                "quarantined": int(self._dicts(*quarantine_count_query(q, ph, stream))[0]["n"])}
