"""``--settle`` against a real PostgreSQL source, exactly the case it exists for.

Session A opens a transaction and inserts a row stamped with its own clock; B inserts a
later row and commits; the loader runs while A is still open (A's row is invisible to
it, but B's moves the watermark past A's timestamp); then A commits. Without --settle the
next run reads from the watermark up and never sees A's row: it is lost. With --settle
the watermark stayed behind ``now − settle``, so the next run reads A's row and loads it.
"""

from __future__ import annotations

import datetime as dt
import time

import hiwater
from hiwater.sources.sql import SqlSource

from .dbutil import PG_URL, pg_connect, read_table


def scenario(pg_schema, target_url, settle):
    src = lambda: SqlSource(f"{PG_URL}?schema={pg_schema}", table="events")  # noqa: E731
    load = lambda **kw: hiwater.load(source=src(), target=target_url, table="events",  # noqa: E731
                                     settle=settle, **kw).to_dict(details=True)
    a, b = pg_connect(options=f"-c search_path={pg_schema}"), pg_connect(options=f"-c search_path={pg_schema}")
    try:
        b.execute("CREATE TABLE events (id int PRIMARY KEY, name text,"
                  " modified_at timestamptz NOT NULL DEFAULT clock_timestamp())")
        b.execute("INSERT INTO events VALUES (1, 'old', now() - interval '10 minutes')")
        load()
        a.execute("BEGIN")
        a.execute("INSERT INTO events (id, name) VALUES (2, 'slow transaction')")  # stamped now, not committed
        time.sleep(0.01)
        b.execute("INSERT INTO events (id, name) VALUES (3, 'fast transaction')")  # later stamp, committed
        first = load()  # sees 3, not 2
        first["_ran_at"] = dt.datetime.now(dt.timezone.utc)
        a.execute("COMMIT")
        second = load()
        (stamp_a,), (stamp_b,) = b.execute("SELECT modified_at FROM events WHERE id IN (2, 3) ORDER BY id")
        assert stamp_a < stamp_b
        return first, second, {r["id"] for r in read_table(target_url, "events")}
    finally:
        a.close()
        b.close()


def test_without_settle_a_late_committing_row_is_lost(pg_schema, target_url):
    first, second, ids = scenario(pg_schema, target_url, None)
    assert first["inserted"] == 1 and second["source_records"] == 1  # only the row at the watermark
    assert ids == {1, 3}  # id 2 committed below the watermark: never read again


def test_with_settle_the_next_run_loads_it(pg_schema, target_url):
    first, second, ids = scenario(pg_schema, target_url, "1m")
    watermark = dt.datetime.fromisoformat(first["new_watermark"])
    assert first["inserted"] == 1 and watermark <= first["_ran_at"] - dt.timedelta(minutes=1)
    assert second["inserted"] == 1 and second["unchanged"] == 1  # 2 loaded; 3 read again, absorbed
    assert ids == {1, 2, 3}
