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


# --- the file manifest (SPEC §10) ---------------------------------------------------------------
FILES_COLS = ("stream", "path", "size", "mtime_ns", "etag", "run_id")


def files_read_query(table: str, ph: str, stream: str):
    """A stream's whole manifest in one query (compared with the listing in memory)."""
    return f"SELECT path, size, mtime_ns, etag FROM {table} WHERE stream = {ph}", [stream]


def files_rows(stream: str, entries, run_id: int) -> list[tuple]:
    """The manifest rows of ``entries`` (``FileEntry``), in :data:`FILES_COLS` order."""
    return [(stream, e.path, e.size, e.mtime_ns, e.etag, run_id) for e in entries]


def manifest(rows) -> dict:
    """``{path: (size, mtime_ns, etag)}`` from the rows of :func:`files_read_query`."""
    return {r[0]: (int(r[1]), None if r[2] is None else int(r[2]), r[3]) for r in rows}
