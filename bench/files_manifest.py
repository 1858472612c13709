#!/usr/bin/env python3
"""A landing folder that grows: what does the run after one new file cost? (issue 12, SPEC §10)

    .venv/bin/python bench/files_manifest.py                   # 1,000 files x 1,000 records, local and S3
    .venv/bin/python bench/files_manifest.py --files 100 --records 100 --reps 1   # a smoke run

For each store (a local folder; a moto S3 server started here on 127.0.0.1), every step is its
own `hiwater load` process (interpreter start included), timed around the process, and then
the same steps through `hiwater.load()` in this process (imports paid by a warm-up run first):

  full       load the whole folder (FILES files) into an empty SQLite target
  one-more   add one file, run again: the manifest skips the FILES files already applied
  reread     the same run with --reread-files: every file read again (hiwater without a
             manifest, as before issue 12)
  one-alone  that one file loaded alone into an empty target (the floor the goal is set against)

S3 also reports the listing alone (s3fs `find` of the prefix, in-process). Goals: one-more <=
2x one-alone, and >= 50x cheaper than reread. Prints a Markdown table; --out writes JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HIWATER = os.path.join(os.path.dirname(sys.executable), "hiwater")
NOW = "2025-06-01T00:00:00Z"


def write_file(path: str, index: int, records: int, month: int = 1) -> None:
    """``records`` records; a file added later (``month=2``) holds newer cursors than the folder,
    as the next export of a landing folder does (not late records)."""
    base = index * records
    with open(path, "w") as f:
        for j in range(records):
            i = base + j + 1
            f.write(json.dumps({"id": i, "name": f"e{i % 97}", "amount": round(i * 0.37, 2),
                                "modified_at": f"2025-{month:02d}-{1 + index % 28:02d}T{j % 24:02d}:{j % 60:02d}:00"})
                    + "\n")


def timed(args: list, env: dict | None = None) -> float:
    t = time.perf_counter()
    done = subprocess.run([HIWATER, "load", *args, "--now", NOW, "--progress", "never"], capture_output=True,
                          text=True, env={**os.environ, **(env or {})})
    elapsed = time.perf_counter() - t
    if done.returncode != 0:
        raise SystemExit(f"hiwater failed: {done.stderr.strip()}")
    return elapsed


def summary(args: list, env: dict | None = None) -> dict:
    done = subprocess.run([HIWATER, "load", *args, "--now", NOW, "--details", "--progress", "never"],
                          capture_output=True, text=True, env={**os.environ, **(env or {})})
    return json.loads(done.stdout)


def in_process(source: str, db: str, expect_read: int | None = None, **kw) -> float:
    import hiwater
    t = time.perf_counter()
    got = hiwater.load(source, db=db, table="events", now=NOW, **kw).to_dict()
    elapsed = time.perf_counter() - t
    if expect_read is not None:
        assert got["files"]["read"] == expect_read, got["files"]
    return elapsed


def run_store(name: str, source: str, add_file, work: str, files: int, records: int, reps: int,
              env: dict | None = None, cli: bool = True) -> dict:
    res = {"store": name, "one_more": [], "reread": [], "one_alone": [], "full": [],
           "ip_full": [], "ip_one_more": [], "ip_reread": [], "ip_one_alone": []}
    warm = os.path.join(work, f"{name}-warm.db")  # imports and first-use costs paid before any clock
    in_process(source, warm)
    os.unlink(warm)
    for rep in range(reps):
        if cli:
            db = os.path.join(work, f"{name}-{rep}.db")
            res["full"].append(timed(["--input", source, "--db", db, "--table", "events"], env))
            single = add_file(files + rep)  # a new file in the folder, named after the others
            res["one_more"].append(timed(["--input", source, "--db", db, "--table", "events"], env))
            got = summary(["--input", source, "--db", db, "--table", "events"], env)  # nothing new now
            assert got["files"]["read"] == 0, got["files"]
            res["reread"].append(timed(["--input", source, "--db", db, "--table", "events", "--reread-files"],
                                       env))
            alone = os.path.join(work, f"{name}-alone-{rep}.db")
            res["one_alone"].append(timed(["--input", single, "--db", alone, "--table", "events"], env))
        # The same steps through the library in this process: no interpreter start-up, no imports.
        db = os.path.join(work, f"{name}-ip-{rep}.db")
        res["ip_full"].append(in_process(source, db))
        single = add_file(files + 100 + rep)
        res["ip_one_more"].append(in_process(source, db, expect_read=1))
        res["ip_reread"].append(in_process(source, db, reread_files=True))
        res["ip_one_alone"].append(in_process(single, os.path.join(work, f"{name}-ip-alone-{rep}.db")))
    if not cli:
        return res
    check = summary(["--input", source, "--db", os.path.join(work, f"{name}-check.db"), "--table", "events"], env)
    res["records_total"] = check["source_records"]
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--records", type=int, default=1000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--no-s3", action="store_true")
    ap.add_argument("--in-process-only", action="store_true", help="skip the CLI processes")
    ap.add_argument("--out", help="also write the results as JSON here")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="hiwater-files-bench-")
    results = []
    try:
        folder = os.path.join(work, "landing")
        os.makedirs(folder)
        for i in range(a.files):
            write_file(os.path.join(folder, f"part-{i:06d}.jsonl"), i, a.records)

        def add_local(i):
            p = os.path.join(folder, f"part-{i:06d}.jsonl")
            write_file(p, i, a.records, month=2)
            return p

        results.append(run_store("local", folder, add_local, work, a.files, a.records, a.reps,
                                 cli=not a.in_process_only))
        if not a.no_s3:
            results.append(s3_run(folder, work, a))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{a.files} files x {a.records} records, median of {a.reps}; wall seconds per `hiwater load` process\n")
    print("| store | full folder | one more file | --reread-files | that file alone | one-more / alone | "
          "reread / one-more | listing |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        if not r["full"]:
            continue
        m = {k: statistics.median(r[k]) for k in ("full", "one_more", "reread", "one_alone")}
        r["medians"] = m
        listing = f"{r['listing_s']:.3f}" if "listing_s" in r else "-"
        print(f"| {r['store']} | {m['full']:.2f} | {m['one_more']:.2f} | {m['reread']:.2f} | {m['one_alone']:.2f} | "
              f"{m['one_more'] / m['one_alone']:.2f}x | {m['reread'] / m['one_more']:.1f}x | {listing} |")
    print("\nThe same steps through the library (hiwater.load) in one process, median seconds\n")
    print("| store | full folder | one more file | --reread-files | that file alone | one-more / alone | "
          "reread / one-more |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        m = {k: statistics.median(r["ip_" + k]) for k in ("full", "one_more", "reread", "one_alone")}
        r["ip_medians"] = m
        print(f"| {r['store']} | {m['full']:.3f} | {m['one_more']:.3f} | {m['reread']:.3f} | {m['one_alone']:.3f} | "
              f"{m['one_more'] / m['one_alone']:.2f}x | {m['reread'] / m['one_more']:.1f}x |")
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"files": a.files, "records": a.records, "reps": a.reps, "results": results}, f, indent=2)


def s3_run(folder: str, work: str, a) -> dict:
    """The same story on a moto S3 server on 127.0.0.1 (a free port), through s3fs."""
    from moto.server import ThreadedMotoServer
    import s3fs
    srv = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    srv.start()
    try:
        host, port = srv.get_host_and_port()
        env = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "bench",
               "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
               "AWS_EC2_METADATA_DISABLED": "true"}
        os.environ.update(env)
        fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": env["AWS_ENDPOINT_URL"]})
        fs.mkdir("landing")
        fs.put(folder + "/", "landing/events/", recursive=True)

        def add_s3(i):
            i += 10_000  # not a name the local run added (those were uploaded with the folder)
            local = os.path.join(work, f"s3-part-{i:06d}.jsonl")
            write_file(local, i, a.records, month=2)
            fs.put(local, f"landing/events/part-{i:06d}.jsonl")
            return f"s3://landing/events/part-{i:06d}.jsonl"

        res = run_store("s3 (moto)", "s3://landing/events/", add_s3, work, a.files, a.records, a.reps, env,
                        cli=not a.in_process_only)
        fs.invalidate_cache()
        t = time.perf_counter()
        n = len(fs.find("landing/events/", detail=True))
        res["listing_s"] = time.perf_counter() - t
        res["listed"] = n
        return res
    finally:
        srv.stop()


if __name__ == "__main__":
    main()
