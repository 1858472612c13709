"""6. Soak with many streams: 20 streams in one PostgreSQL target, 4 runners at once.

Each stream has its own JSON Lines source, rewritten atomically (write + rename) before some
runs with new keys, updates (a newer cursor), late versions of known keys (an older cursor:
they must never win), late new keys (an older cursor: ``--on-late load`` applies them) and
exact duplicates of records already sent. Four runner threads pick a random stream each time
(two runners on one stream queue on its advisory lock), sometimes with ``--window``, and
SIGKILL about a third of the runs at a random instant. At the end one clean run per stream,
then every table must equal its reference model: for each key the version with the newest
cursor, nothing lost, nothing twice; and each stream's history must be one chain.

``HIWATER_SOAK_STREAM_RUNS`` runs in all (CI 40; ``HIWATER_RELIABILITY=full`` 500).
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
import uuid
from pathlib import Path

import pytest

import hiwater

from .harness import LOST, NOW, env_int, start

pytestmark = pytest.mark.reliability
STREAMS = 20
RUNNERS = 4



def _t(minute: int) -> str:
    day, m = divmod(minute, 1440)
    return f"2025-{1 + day // 28:02d}-{1 + day % 28:02d}T{m // 60:02d}:{m % 60:02d}:00"


class Stream:
    def __init__(self, i: int, d: Path, rnd: random.Random):
        self.name = f"s{i:02d}"
        self.path = d / f"{self.name}.jsonl"
        self.records: list = []
        self.model: dict = {}   # key -> (cursor minute, name)
        self.next_key = 1
        self.clock = 60         # the newest cursor so far (minutes)
        self.versions = 0
        self.lock = threading.Lock()
        self.rnd = rnd
        self.grow()

    def _add(self, key: int, minute: int) -> None:
        self.versions += 1
        rec = {"id": key, "name": f"k{key}-v{self.versions}", "modified_at": _t(minute)}
        self.records.append(rec)
        cur = self.model.get(key)
        if cur is None or minute > cur[0]:
            self.model[key] = (minute, rec["name"])

    def grow(self) -> None:
        """New keys, updates, late versions, late new keys, duplicates; the file replaced atomically."""
        rnd = self.rnd
        with self.lock:
            for _ in range(rnd.randint(3, 12)):  # new keys, newer cursors
                self.clock += rnd.randint(0, 30)
                self._add(self.next_key, self.clock)
                self.next_key += 1
            keys = list(self.model)
            for key in rnd.sample(keys, min(len(keys), rnd.randint(0, 5))):  # updates
                self.clock += rnd.randint(1, 20)
                self._add(key, self.clock)
            for key in rnd.sample(keys, min(len(keys), rnd.randint(0, 3))):  # late versions: never win
                old = self.model[key][0]
                if old > 1:
                    self._add(key, rnd.randint(max(0, old - 600), old - 1))
            for _ in range(rnd.randint(0, 2)):  # late new keys
                self._add(self.next_key, rnd.randint(0, max(1, self.clock - 60)))
                self.next_key += 1
            for rec in rnd.sample(self.records, min(len(self.records), rnd.randint(0, 4))):  # duplicates
                self.records.append(dict(rec))
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text("".join(json.dumps(r) + "\n" for r in self.records))
            os.replace(tmp, self.path)


@pytest.mark.slow
def test_twenty_streams_four_runners_random_kills_equal_their_models(tmp_path):
    from db.dbutil import PG_URL, pg_connect, server_or_skip
    admin = server_or_skip("PostgreSQL", PG_URL, pg_connect)
    schema = f"wt15_soak_{uuid.uuid4().hex[:8]}"
    admin.execute(f'CREATE SCHEMA "{schema}"')
    url = f"{PG_URL}?schema={schema}"
    wanted = env_int("HIWATER_SOAK_STREAM_RUNS", 40, 500)
    rnd = random.Random(15)
    streams = [Stream(i, tmp_path, random.Random(1000 + i)) for i in range(STREAMS)]
    counts = {"runs": 0, "kills": 0, "late_kills": 0, "completed": 0, "lock_waits": 0, "lock_lost": 0}
    guard = threading.Lock()
    errors: list = []

    def argv(s: Stream, window: bool):
        a = ["load", "--input", s.path, "--target", url, "--table", s.name, "--now", NOW, "--on-late", "load",
             "--lock-timeout", "60s"]
        return a + (["--window", "1d"] if window else [])

    def runner(seed: int):
        r = random.Random(seed)
        while not errors:
            with guard:
                if counts["runs"] >= wanted:
                    return
                counts["runs"] += 1
            s = streams[r.randrange(STREAMS)]
            if r.random() < 0.6:
                s.grow()
            p = start(argv(s, r.random() < 0.3), tmp_path)
            if r.random() < 0.35:
                p.proc.join(r.uniform(0, 1.5))
                killed = p.kill()
                if killed:
                    with guard:
                        counts["kills"] += 1
                    continue
                with guard:
                    counts["late_kills"] += 1
            done = p.wait(180)
            if done.code in (0, LOST):
                with guard:
                    counts["completed"] += 1
            elif done.code == 1 and "lost the stream lock" in done.err:
                # another suite on the shared server terminated advisory-lock holders on purpose
                with guard:
                    counts["lock_lost"] += 1
            else:
                errors.append((s.name, done.code, done.err))

    t0 = time.monotonic()
    threads = [threading.Thread(target=runner, args=(i,)) for i in range(RUNNERS)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors[:3]
        # one clean run per stream, then every table against its model
        def final(group):
            for s in group:
                for _ in range(3):
                    done = start(argv(s, False), tmp_path).wait(180)
                    if not (done.code == 1 and "lost the stream lock" in done.err):
                        break
                if done.code != 0:
                    errors.append((s.name, done.code, done.err))
        finals = [threading.Thread(target=final, args=(streams[i::RUNNERS],)) for i in range(RUNNERS)]
        for t in finals:
            t.start()
        for t in finals:
            t.join()
        assert not errors, errors[:3]
        lost = dup = wrong = 0
        for s in streams:
            rows = admin.execute(f'SELECT id, name, modified_at FROM "{schema}"."{s.name}"').fetchall()
            got = {}
            for key, name, _ in rows:
                dup += key in got
                got[key] = name
            lost += len(set(s.model) - set(got))
            wrong += sum(1 for k, (_, name) in s.model.items() if k in got and got[k] != name)
            assert set(got) == set(s.model), (s.name, sorted(set(s.model) ^ set(got))[:10])
            assert all(got[k] == name for k, (_, name) in s.model.items()), s.name
            hist = [h for h in hiwater.history(target=url, stream=s.name) if h["outcome"] == "committed"]
            runs: dict = {}
            for h in hist:
                runs.setdefault(h["run_id"], []).append(h)
            prev = None
            for rid in sorted(runs):
                ws = sorted(runs[rid], key=lambda h: h["window_index"])
                assert [w["window_index"] for w in ws] == list(range(len(ws))), (s.name, rid)
                if prev is not None:
                    assert ws[0]["watermark_before_value"] == prev, (s.name, rid)
                prev = ws[-1]["watermark_after_value"]
        assert lost == dup == wrong == 0
        records = sum(len(s.records) for s in streams)
        print(f"\nFIGURES soak-streams: {counts['runs']} runs over {STREAMS} streams by {RUNNERS} runners "
              f"({counts['kills']} SIGKILLed mid-run, {counts['late_kills']} kills after the end not counted, "
              f"{counts['completed']} completed, {counts['lock_lost']} lock connections terminated by other "
              f"suites), {records} source records, {sum(len(s.model) for s in streams)} keys: rows lost {lost}, "
              f"duplicated {dup}, wrong version {wrong}; {time.monotonic() - t0:.0f} s")
    finally:
        admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.close()
