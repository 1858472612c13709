#!/usr/bin/env python3
"""The textbook incremental loop, as tutorials write it.

    watermark = SELECT watermark FROM state
    rows = [json.loads(line) for line in file]          # read everything
    rows.sort(key=cursor)                               # sort by the cursor
    for row in rows:
        if watermark is None or row.cursor > watermark: # exclusive '>'
            INSERT OR REPLACE INTO events VALUES (...)  # one statement per row
    UPDATE state SET watermark = max cursor; COMMIT

Standard-library json, one execute() per row, one transaction, the watermark in a state table in
the same SQLite file. It is correct on this benchmark's data (every change carries a newer
timestamp than the previous run saw), and it is what the other tools are compared with.

Prints one JSON line: {"tool": "textbook", "records": N, "loaded": L, "total_in_target": M}.
"""
from __future__ import annotations

import argparse
import json
import sqlite3
import sys


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="textbook incremental load into SQLite")
    ap.add_argument("--input", required=True)
    ap.add_argument("--db", required=True)
    ap.add_argument("--table", default="events")
    ap.add_argument("--cursor", default="modified_at")
    a = ap.parse_args(argv)
    q = '"' + a.table.replace('"', '""') + '"'
    con = sqlite3.connect(a.db)
    con.execute(f"CREATE TABLE IF NOT EXISTS {q} (id INTEGER PRIMARY KEY, name TEXT, "
                "modified_at TEXT, amount REAL, score INTEGER, user TEXT)")
    con.execute("CREATE TABLE IF NOT EXISTS textbook_state (stream TEXT PRIMARY KEY, "
                "watermark TEXT)")
    row = con.execute("SELECT watermark FROM textbook_state WHERE stream = ?",
                      (a.table,)).fetchone()
    watermark = row[0] if row else None

    with open(a.input, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    rows.sort(key=lambda r: r[a.cursor])

    loaded = 0
    new_watermark = watermark
    for r in rows:
        c = r[a.cursor]
        if watermark is None or c > watermark:
            con.execute(f"INSERT OR REPLACE INTO {q} (id, name, modified_at, amount, score, user) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        (r["id"], r.get("name"), c, r.get("amount"), r.get("score"),
                         json.dumps(r.get("user"))))
            loaded += 1
            if new_watermark is None or c > new_watermark:
                new_watermark = c
    con.execute("INSERT OR REPLACE INTO textbook_state (stream, watermark) VALUES (?, ?)",
                (a.table, new_watermark))
    con.commit()
    total = con.execute(f"SELECT count(*) FROM {q}").fetchone()[0]
    con.close()
    print(json.dumps({"tool": "textbook", "records": len(rows), "loaded": loaded,
                      "previous_watermark": watermark, "new_watermark": new_watermark,
                      "total_in_target": total}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
