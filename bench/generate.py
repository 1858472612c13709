#!/usr/bin/env python3
"""Fixed-seed data generator for the hiwater benchmark.

Writes into DIR:

* ``base.jsonl``  -- N records ``{id, name, modified_at, amount, score, user}`` in id order.
  ``modified_at`` is a naive ISO-8601 timestamp (whole seconds) that grows with the id, except
  for ~5% local disorder (a record stamped up to a minute earlier than its neighbours) and ~3%
  ties (a record sharing its predecessor's timestamp).
* ``delta.jsonl`` -- a re-export of the same source table after some activity: every base record
  again, in id order, where 1% of them were updated in place (newer ``modified_at``, new
  ``amount``, ``score`` raised by ``UPDATE_SCORE_OFFSET`` so a verifier can count them), followed
  by 1% brand-new records (ids N+1 ...). Every update and every new record is stamped after the
  newest base timestamp, some of them tied with each other.
* ``meta.json``   -- what a verifier needs: counts, the newest timestamps, and exact expected
  rows for a sample of ids (plain, updated and new).

Both files are written in one streaming pass, chunk by chunk, with numpy for the random draws
and orjson for the lines, so 10,000,000 records take well under a minute and little memory.

Usage: python bench/generate.py --n 1000000 --seed 42 --out bench/data/n1000000
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time

import numpy as np
import orjson

BASE_TIME = np.datetime64("2024-01-01T00:00:00", "s")
CHUNK = 200_000
UPDATE_SCORE_OFFSET = 1_000_000  # updated rows carry score >= this; base scores are < 1000
DISORDER_P = 0.05
TIE_P = 0.03
UPDATE_P = 0.01
NEW_P = 0.01
SAMPLE_PER_KIND = 200

NAMES = np.array(
    ["user_signup", "page_view", "purchase", "logout", "password_reset", "login", "add_to_cart",
     "remove_from_cart", "search", "checkout", "refund", "subscribe", "unsubscribe", "share",
     "comment", "like"], dtype=object)
FIRST = ["ada", "alan", "grace", "edsger", "barbara", "donald", "ken", "dennis", "linus",
         "guido", "margaret", "john", "frances", "radia", "leslie", "tony"]
LAST = ["lovelace", "turing", "hopper", "dijkstra", "liskov", "knuth", "thompson", "ritchie",
        "torvalds", "rossum", "hamilton", "backus", "allen", "perlman", "lamport", "hoare"]
USER_NAMES = np.array([f"{f}_{l}" for f in FIRST for l in LAST], dtype=object)  # 256
TIERS = np.array(["free", "basic", "pro", "enterprise"], dtype=object)


def _chunk_rng(seed: int, stream: int, index: int) -> np.random.Generator:
    # An independent, reproducible generator per chunk: output does not depend on CHUNK order.
    return np.random.default_rng([seed, stream, index])


def _iso(ts: np.ndarray) -> list:
    return np.datetime_as_string(ts, unit="s").tolist()


def _base_chunk(seed: int, index: int, lo: int, hi: int):
    """Records with ids lo..hi-1 (1-based ids), as column lists plus raw arrays."""
    rng = _chunk_rng(seed, 1, index)
    n = hi - lo
    ids = np.arange(lo, hi, dtype=np.int64)
    # Nominal time: one record per second of source activity.
    secs = ids.copy()
    u = rng.random(n)
    tie = u < TIE_P
    # A tie repeats the previous id's nominal second.
    secs[tie] -= 1
    disorder = (u >= TIE_P) & (u < TIE_P + DISORDER_P)
    secs[disorder] -= rng.integers(2, 60, size=int(disorder.sum()))
    secs = np.maximum(secs, 0)
    ts = BASE_TIME + secs.astype("timedelta64[s]")
    amount = np.round(rng.random(n) * 1000.0, 2)
    score = rng.integers(0, 1000, size=n)
    name_i = rng.integers(0, len(NAMES), size=n)
    user_i = rng.integers(0, len(USER_NAMES), size=n)
    tier_i = rng.integers(0, len(TIERS), size=n)
    return ids, ts, amount, score, name_i, user_i, tier_i


def _lines(ids, ts_iso, amount, score, names, unames, tiers):
    # A generator, written with writelines(): each line is freed as soon as it is written.
    # (orjson's output buffers are over-allocated; holding a chunk's worth of them costs ~4 KB
    # a line.)
    dumps = orjson.dumps
    opt = orjson.OPT_APPEND_NEWLINE
    return (
        dumps({"id": i, "name": nm, "modified_at": t, "amount": a, "score": s,
               "user": {"name": un, "tier": ti}}, option=opt)
        for i, nm, t, a, s, un, ti in zip(ids, names, ts_iso, amount, score, unames, tiers)
    )


def generate(n: int, seed: int, out: str, quiet: bool = False) -> dict:
    os.makedirs(out, exist_ok=True)
    t0 = time.perf_counter()
    n_chunks = (n + CHUNK - 1) // CHUNK
    # The newest base timestamp is known up front: ids only move backwards from their nominal
    # second, and the last id's nominal second is n.
    # (Computed exactly below while streaming; this bound places updates strictly after it.)
    after = BASE_TIME + np.timedelta64(n + 1, "s")
    base_max = None
    n_updates = 0
    samples = {"base": [], "updated": [], "new": []}
    expected_first = []  # sample rows as they must be after the first load
    sample_rng = np.random.default_rng([seed, 9])
    base_path = os.path.join(out, "base.jsonl")
    delta_path = os.path.join(out, "delta.jsonl")
    with open(base_path + ".tmp", "wb", buffering=1 << 20) as fb, \
            open(delta_path + ".tmp", "wb", buffering=1 << 20) as fd:
        for c in range(n_chunks):
            lo = 1 + c * CHUNK
            hi = min(n, c * CHUNK + CHUNK) + 1
            ids, ts, amount, score, name_i, user_i, tier_i = _base_chunk(seed, c, lo, hi)
            cmax = ts.max()
            base_max = cmax if base_max is None else max(base_max, cmax)
            names = NAMES[name_i].tolist()
            unames = USER_NAMES[user_i].tolist()
            tiers = TIERS[tier_i].tolist()
            ids_l = ids.tolist()
            ts_iso = _iso(ts)
            amount_l = amount.tolist()
            score_l = score.tolist()
            fb.writelines(_lines(ids_l, ts_iso, amount_l, score_l, names, unames, tiers))

            # Updates for this chunk: newer timestamps, after every base record.
            rng = _chunk_rng(seed, 2, c)
            upd = rng.random(len(ids)) < UPDATE_P
            k = int(upd.sum())
            n_updates += k
            # Updates happen over a short period after the base export: 0..k*2 seconds after,
            # with some ties (a coarse clock), in no particular order relative to ids.
            upd_secs = rng.integers(0, max(2, n // 50), size=k) // 2 * 2
            u_ts = after + upd_secs.astype("timedelta64[s]")
            u_amount = np.round(rng.random(k) * 1000.0 + 1000.0, 2)
            d_ts = ts.copy()
            d_ts[upd] = u_ts
            d_amount = amount.copy()
            d_amount[upd] = u_amount
            d_score = score.copy()
            d_score[upd] += UPDATE_SCORE_OFFSET
            fd.writelines(_lines(ids_l, _iso(d_ts), d_amount.tolist(), d_score.tolist(),
                            names, unames, tiers))

            # Samples for verification (exact rows).
            pick = sample_rng.choice(len(ids), size=min(3, len(ids)), replace=False)
            for p in pick.tolist():
                row = {"id": ids_l[p], "modified_at": ts_iso[p], "amount": amount_l[p],
                       "score": score_l[p]}
                expected_first.append(row)
                if not upd[p]:
                    samples["base"].append(row)
            upd_idx = np.flatnonzero(upd)
            if len(upd_idx):
                for p in sample_rng.choice(upd_idx, size=min(3, len(upd_idx)),
                                           replace=False).tolist():
                    samples["updated"].append(
                        {"id": ids_l[p], "modified_at": str(d_ts[p]),
                         "amount": float(d_amount[p]), "score": int(d_score[p])})
            if not quiet:
                done = hi - 1
                print(f"\r  {done:,}/{n:,} records", end="", file=sys.stderr, flush=True)

        # New records, appended after the re-exported base.
        n_new = max(1, int(round(n * NEW_P)))
        new_max = None
        for c in range((n_new + CHUNK - 1) // CHUNK):
            lo = n + 1 + c * CHUNK
            hi = min(n + n_new, n + c * CHUNK + CHUNK) + 1
            rng = _chunk_rng(seed, 3, c)
            k = hi - lo
            ids = np.arange(lo, hi, dtype=np.int64)
            secs = np.sort(rng.integers(0, max(2, n // 50), size=k)) // 2 * 2
            ts = after + secs.astype("timedelta64[s]")
            new_max = ts.max() if new_max is None else max(new_max, ts.max())
            amount = np.round(rng.random(k) * 1000.0, 2)
            score = rng.integers(0, 1000, size=k)
            names = NAMES[rng.integers(0, len(NAMES), size=k)].tolist()
            unames = USER_NAMES[rng.integers(0, len(USER_NAMES), size=k)].tolist()
            tiers = TIERS[rng.integers(0, len(TIERS), size=k)].tolist()
            ids_l, ts_iso, amount_l, score_l = ids.tolist(), _iso(ts), amount.tolist(), score.tolist()
            fd.writelines(_lines(ids_l, ts_iso, amount_l, score_l, names, unames, tiers))
            for p in sample_rng.choice(k, size=min(SAMPLE_PER_KIND, k), replace=False).tolist():
                samples["new"].append({"id": ids_l[p], "modified_at": ts_iso[p],
                                       "amount": amount_l[p], "score": score_l[p]})
    os.replace(base_path + ".tmp", base_path)
    os.replace(delta_path + ".tmp", delta_path)

    def cap(rows):
        if len(rows) <= SAMPLE_PER_KIND:
            return rows
        idx = sample_rng.choice(len(rows), size=SAMPLE_PER_KIND, replace=False)
        return [rows[i] for i in sorted(idx.tolist())]

    # The newest delta timestamp is the max over updates and new records.
    meta = {
        "generator": "bench/generate.py",
        "version": 1,
        "n": n,
        "seed": seed,
        "n_new": n_new,
        "n_updates": n_updates,
        "expected_rows_base": n,
        "expected_rows_delta": n + n_new,
        "update_score_offset": UPDATE_SCORE_OFFSET,
        "base_max_modified_at": str(base_max),
        "delta_records": n + n_new,
        "base_bytes": os.path.getsize(base_path),
        "delta_bytes": os.path.getsize(delta_path),
        "samples_first": cap(expected_first),
        "samples_base_unchanged": cap(samples["base"]),
        "samples_updated": cap(samples["updated"]),
        "samples_new": cap(samples["new"]),
        "seconds": round(time.perf_counter() - t0, 2),
    }
    with open(os.path.join(out, "meta.json"), "wb") as f:
        f.write(orjson.dumps(meta, option=orjson.OPT_INDENT_2))
    if not quiet:
        print(f"\r  wrote {n:,} base + {n + n_new:,} delta records ({n_updates:,} updates, "
              f"{n_new:,} new) to {out} in {meta['seconds']} s", file=sys.stderr)
    return meta


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, required=True, help="number of base records")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)
    if a.n < 1:
        ap.error("--n must be >= 1")
    generate(a.n, a.seed, a.out, quiet=a.quiet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
