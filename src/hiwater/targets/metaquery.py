"""Pure builders of the queries over the ``_hiwater_*`` tables, shared by every target.

Each returns ``(sql, params)`` and does no I/O; a target passes its placeholder (``?`` or
``%s``) and its (qualified, quoted) table name, then runs the result.
"""

from __future__ import annotations


def history_query(table: str, ph: str, stream: str | None = None, limit: int | None = None):
    """History rows, oldest first; with ``limit`` only the newest ``limit`` of them."""
    sql = f"SELECT * FROM {table}"
    params: list = []
    if stream is not None:
        sql += f" WHERE stream = {ph}"
        params.append(stream)
    if limit:
        sql = (f"SELECT * FROM ({sql} ORDER BY run_id DESC, window_index DESC LIMIT {ph}) AS h"
               f" ORDER BY run_id, window_index")
        params.append(limit)
    else:
        sql += " ORDER BY run_id, window_index"
    return sql, params


def quarantine_query(table: str, ph: str, stream: str | None = None, reason: str | None = None,
                     limit: int | None = None):
    """Quarantined records, in the order they were first quarantined."""
    sql = f"SELECT * FROM {table} WHERE 1 = 1"
    params: list = []
    if stream is not None:
        sql += f" AND stream = {ph}"
        params.append(stream)
    if reason is not None:
        sql += f" AND reason = {ph}"
        params.append(reason)
    sql += " ORDER BY id"
    if limit:
        sql += f" LIMIT {ph}"
        params.append(limit)
    return sql, params


def last_run_query(table: str, ph: str, stream: str):
    """The rows (one per committed window, or the failed one) of a stream's latest run."""
    return (f"SELECT * FROM {table} WHERE stream = {ph} AND run_id = "
            f"(SELECT MAX(run_id) FROM {table} WHERE stream = {ph}) ORDER BY window_index", [stream, stream])


def last_success_query(table: str, ph: str, stream: str):
    """When a stream's latest successful run (committed, no failed slice) finished, as ``at``."""
    return (f"SELECT MAX(finished_at) AS at FROM {table} WHERE stream = {ph} AND outcome = 'committed'"
            f" AND run_id NOT IN (SELECT run_id FROM {table} WHERE stream = {ph} AND outcome = 'failed')",
            [stream, stream])


def quarantine_count_query(table: str, ph: str, stream: str):
    """How many records of a stream are in the quarantine, as ``n``."""
    return f"SELECT COUNT(*) AS n FROM {table} WHERE stream = {ph}", [stream]
