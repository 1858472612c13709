"""``hiwater status`` and ``hiwater check``: each stream's watermark, ages and latest run, read
from its target, and a bucketed stream's row aggregated from its buckets' (docs/scale-out.md).
"""

from __future__ import annotations

from . import freshness as F
from . import values as V
from .durations import parse_duration
from .errors import HiwaterError, UsageError
from .keyhash import buckets_of, least_state, parse_name
from .keyhash import members as bucket_streams
from .options import LoadOptions
from .spec import absent, connected, project_groups
from .targets import open_target
from .urls import redact

UNREACHABLE = "unreachable"  # a status row's outcome when its target did not answer
DEFECTS = ("missing", "extra", "stale", "ahead", "changed")  # the key classes a verify fails on (docs/verify.md)


def _now_us(now) -> int:
    if now is None:
        return V.now_us()
    return V.now_us(LoadOptions.build(now=now).now)


def status(streams=None, *, project=None, db=None, target=None, now=None) -> list[dict]:
    """``hiwater status``: every stream of the project (or of the target ``db``/``target``): its
    watermark, its two ages (load age: since the latest successful run; data age: now −
    watermark), the latest run (when, outcome, counts, duration, error), the quarantine size and
    the last recorded verify (``verify``: its document or ``None``; ``verified``: ``2h ago,
    equal`` or ``never``; ``verify_age_s``).

    A target's streams are those with a state or a history row (a stream whose runs all failed
    is listed, failing). A project stream is looked up under its state name (its ``stream``). A
    project target that is down gives each of its streams a row with outcome ``unreachable``
    and the error; the other targets' rows are shown. Nothing is created: a target not made yet
    has its streams "never run"."""
    if isinstance(streams, str):
        streams = [streams]
    now_us = _now_us(now)
    rows = []
    for kw, members in project_groups(project, streams, db, target):
        if members is None or db is not None or target is not None:
            with connected(**kw, existing="status") as tgt:  # the target asked for: its error is the command's
                rows += _target_rows(tgt, members, now_us, named=members is not None)
            continue
        tgt = open_target(**kw)
        if absent(tgt) is not None:
            rows += _target_rows(None, members, now_us, named=False)
            continue
        try:
            with tgt:
                rows += _target_rows(tgt, members, now_us, named=False)
        except HiwaterError as exc:
            rows += [_unreachable(cfg, tgt.description, exc) for _, cfg in members]
    return rows


def _target_rows(tgt, members, now_us: int, *, named: bool) -> list[dict]:
    """The rows of one target's streams (``members``: ``[(name, StreamConfig or None)]``, or
    ``None``: every stream it holds). ``tgt`` ``None``: a target not made yet."""
    states = {s.stream: s for s in tgt.ledger.states()} if tgt is not None else {}
    if members is None:
        names = [(n, None) for n in sorted(tgt.ledger.streams())]
    else:  # a project stream keeps its state under its own stream name
        names = [(cfg.load["stream"] if cfg is not None else n, cfg) for n, cfg in members]
    if named:
        known = tgt.ledger.streams()
        for n, _ in names:
            if n not in known and not buckets_of(states, n):
                raise UsageError(f"no stream named {n!r} in {tgt.description}",
                                 hint="`hiwater status` lists the streams")
    verifies = tgt.ledger.verifies() if tgt is not None else {}
    rows = []
    # A bucketed stream: one row for the stream (the least watermark of its buckets), then
    # one row per bucket (docs/scale-out.md).
    for name, cfg in status_rows(names, states):
        if isinstance(name, tuple):
            row = aggregate_row(name[0], name[1], rows, states, now_us)
        else:
            row = _stream_row(tgt, name, states.get(name), cfg, now_us)
        row.update(verify_fields(verifies.get(name[0] if isinstance(name, tuple) else name), now_us))
        if not isinstance(name, tuple) and row["verify"] is None and parse_name(name) is not None:
            row["verified"] = None  # one bucket: its stream is verified whole (its own row)
        if cfg is not None:
            row["stream"] = cfg.name
            row["warn_after"] = cfg.warn_after.text if cfg.warn_after else None
            row["error_after"] = cfg.error_after.text if cfg.error_after else None
        rows.append(row)
    return rows


def _stream_row(tgt, name: str, s, cfg, now_us: int) -> dict:
    facts = tgt.ledger.facts(name) if tgt is not None else {"last_run": [], "last_success_at": None,
                                                             "quarantined": 0}
    last = facts["last_run"]
    failed = [r for r in last if r.get("outcome") == "failed"]
    head = failed[0] if failed else (last[-1] if last else None)
    load_age = F.load_age_s(facts["last_success_at"], now_us)
    data_age = F.data_age_s(s.watermark if s else None, s.kind if s else None, now_us)
    return {
        "stream": name, "table": s.table if s else (cfg.load.get("table") if cfg else None),
        "target": tgt.description if tgt is not None else _described(cfg), "kind": s.kind if s else None,
        "watermark": s.watermark_text() if s else None,
        "load_age_s": None if load_age is None else round(load_age, 3),
        "load_age": F.age_text(load_age),
        "data_age_s": None if data_age is None else round(data_age, 3),
        "data_age": F.age_text(data_age),
        "last_success_at": facts["last_success_at"],
        "last_run_id": head["run_id"] if head else None,
        "last_run_at": max(r["finished_at"] for r in last) if last else None,
        "last_outcome": ("failed" if failed else head["outcome"]) if head else "never run",
        "last_source_records": _sum(last, "source_records"),
        "last_loaded": _sum(last, "loaded"), "last_skipped": _sum(last, "skipped"),
        "last_rejected": _sum(last, "rejected"),
        "last_duration_s": max((r.get("duration_s") or 0 for r in last), default=None) if last else None,
        "last_error": failed[0].get("error") if failed else None,
        "quarantined": facts["quarantined"],
    }


def _described(cfg) -> str | None:
    kw = cfg.target_kw if cfg is not None else {}
    return redact(kw["target"]) if kw.get("target") else kw.get("db")


def _unreachable(cfg, description: str, exc: HiwaterError) -> dict:
    """A project stream whose target did not answer: nothing known but the error."""
    row = {k: None for k in ("table", "kind", "watermark", "load_age_s", "load_age", "data_age_s", "data_age",
                             "last_success_at", "last_run_id", "last_run_at", "last_source_records",
                             "last_loaded", "last_skipped", "last_rejected", "last_duration_s", "quarantined")}
    row.update(verify=None, verified=None, verify_age_s=None)
    row.update(stream=cfg.name, table=cfg.load.get("table"), target=description, last_outcome=UNREACHABLE,
               last_error=str(exc), warn_after=cfg.warn_after.text if cfg.warn_after else None,
               error_after=cfg.error_after.text if cfg.error_after else None)
    return row


def verify_fields(doc: dict | None, now_us: int) -> dict:
    """A status row's view of the stream's last recorded verify (``hiwater verify``): the document
    (``verify``), its age and a short text (``verified``: ``2h ago, equal``, ``never``)."""
    if doc is None:
        return {"verify": None, "verified": "never", "verify_age_s": None}
    at = F.parse_instant(doc.get("verified_at"))
    age = None if at is None else round((now_us - at) / 1_000_000, 3)
    outcome = "repaired" if doc.get("repaired") else doc.get("outcome")
    return {"verify": doc, "verified": f"{F.age_text(age)} ago, {outcome}", "verify_age_s": age}


def verify_problem(row: dict, limit) -> str | None:
    """Why ``check --verified LIMIT`` fails this status row's stream (``None``: it passes): never
    verified, the last verify differed (and no repair made it equal), or it is older than ``limit``."""
    doc = row.get("verify")
    if row.get("last_outcome") == UNREACHABLE:
        return "target unreachable: its last verify is unknown"
    if doc is None:
        return "never verified"
    age = F.age_text(row["verify_age_s"])
    if doc.get("outcome") == "differs" and not doc.get("repaired"):
        found = ", ".join(f"{n} {c}" for c, n in doc.get("keys", {}).items() if n and c in DEFECTS)
        return f"last verify ({age} ago, through {doc.get('verified_through')}) differs: {found}"
    if limit is not None and (row["verify_age_s"] is None or row["verify_age_s"] * 1_000_000 > limit.micros):
        return f"last verify {age} ago ({doc.get('outcome')}), older than --verified {limit.text}"
    return None


def _sum(rows, name):
    values = [r.get(name) for r in rows if r.get(name) is not None]
    return sum(values) if values else None


def check(streams=None, *, project=None, db=None, target=None, warn_after=None, error_after=None,
          by: str = "load", now=None, verified=None) -> list[dict]:
    """``hiwater check``: each stream's freshness verdict (``ok``, ``warn``, ``error``) on its load
    age (``by="data"``: its data age). ``warn_after``/``error_after`` apply to every stream and
    win over the project file's ``warn-after``/``error-after`` (the file's apply to its streams
    otherwise). A stream with no limit at all is a usage error, never a silent "ok".

    ``verified`` (a duration, ``2d``): also an ``error`` for a stream whose last recorded verify
    differed, is older than that, or never ran (``verify_problem`` says which); a stream
    with no freshness limit is then judged on its verify alone."""
    if by not in F.BY:
        raise UsageError(f"--by {by!r}: choose load or data")
    limits = {}
    for name, v in (("--warn-after", warn_after), ("--error-after", error_after), ("--verified", verified)):
        d = None if v is None else parse_duration(v, name)
        if d is not None and d.micros is None:
            raise UsageError(f"{name} {d.text!r}: give a unit", hint="for example 30m, 6h or 1d")
        limits[name] = d
    rows = status(streams, project=project, db=db, target=target, now=now)
    out, unlimited, no_data_age = [], [], []
    for r in rows:
        if parse_name(r["stream"]) is not None:
            continue  # a bucket: its stream's row judges the least watermark and the oldest load
        warn = limits["--warn-after"] or _dur(r.get("warn_after"), "warn-after")
        error = limits["--error-after"] or _dur(r.get("error_after"), "error-after")
        fresh = warn is not None or error is not None
        if not fresh and verified is None:
            unlimited.append(r["stream"])
            continue
        if fresh and by == "data" and r["kind"] == V.INT:
            no_data_age.append(r["stream"])
            continue
        age = (r["load_age_s"] if by == "load" else r["data_age_s"]) if fresh else None
        freshness = F.verdict(age, warn, error) if fresh else None
        row = {"stream": r["stream"], "by": by if fresh else None, "age_s": age, "age": F.age_text(age),
               "warn_after": warn.text if warn else None, "error_after": error.text if error else None,
               "verdict": freshness, "watermark": r["watermark"],
               "last_outcome": r["last_outcome"], "last_success_at": r["last_success_at"]}
        if verified is not None:
            problem = verify_problem(r, limits["--verified"])
            row.update(freshness=freshness, verified=r["verified"], verify_problem=problem,
                       verified_at=(r["verify"] or {}).get("verified_at"))
            row["verdict"] = "error" if problem else (freshness or "ok")
        out.append(row)
    if unlimited:
        raise UsageError(f"no freshness limit for stream(s) {', '.join(unlimited)}",
                         hint="give --warn-after / --error-after, or warn-after / error-after in the project file")
    if no_data_age:
        raise UsageError(f"stream(s) {', '.join(no_data_age)} have an integer cursor: their data has no age",
                         hint="use --by load, or check those streams separately")
    return out


def _dur(text, name):
    return None if text is None else parse_duration(text, name)


# --- bucketed streams ------------------------------------------------------------------------

def status_rows(names: list, states: dict) -> list:
    """``hiwater status``'s rows in order: each bucketed stream's buckets, then a marker
    ``((stream, bucket names), cfg)`` for its aggregate row. A bucket is listed once."""
    out, seen = [], set()
    for name, cfg in names:
        p = parse_name(name)
        base = p[0] if p is not None else name
        groups = buckets_of(states, base)
        if not groups or (p is None and name in states):
            if name not in seen:
                out.append((name, cfg))
                seen.add(name)
            continue
        if base in seen:
            continue
        seen.add(base)
        for n in sorted(groups):
            # every bucket of the count, a bucket that never committed (no state) included
            names = [m for m in bucket_streams(states, base) if parse_name(m)[2] == n]
            out += [(m, None) for m in names]
            seen.update(names)
            out.append(((base, names), cfg))
    return out


def aggregate_row(stream: str, members: list, rows: list, states: dict, now_us: int) -> dict:
    """The stream's row from its buckets' rows: the least watermark of the buckets that hold one
    (an empty share holds nothing to be behind on), but none while a bucket never committed (its
    keys were never loaded: the stream is behind, never ``ok``); the oldest load age, the sum of
    the counts; each bucket's lag behind the most advanced one."""
    mine = {r["stream"]: r for r in rows if r["stream"] in members}
    ss = [states.get(m) for m in members]
    committed = [s for s in ss if s is not None]
    least = least_state(committed) if len(committed) == len(ss) else None
    lead = max((s.watermark for s in committed if s.watermark is not None), default=None)
    kind = committed[0].kind
    per_unit = 1_000_000 * V.scale(kind) if kind in V.TIME_KINDS else 1
    data_age = F.data_age_s(least.watermark if least else None, kind, now_us)
    load_ages = [r["load_age_s"] for r in mine.values()]
    load_age = None if any(a is None for a in load_ages) else max(load_ages)
    outcomes = [r["last_outcome"] for r in mine.values()]
    successes = [r["last_success_at"] for r in mine.values()]
    bucket_rows = []
    for m, s in zip(members, ss):
        lag = None if s is None or s.watermark is None or lead is None else (lead - s.watermark) / per_unit
        bucket_rows.append({"stream": m, "watermark": mine[m]["watermark"], "lag": lag,
                            "lag_text": F.age_text(lag) if per_unit != 1 else lag,
                            "last_outcome": mine[m]["last_outcome"]})
        mine[m]["lag"] = bucket_rows[-1]["lag_text"]
    return {
        "stream": stream, "table": committed[0].table, "target": next(iter(mine.values()))["target"], "kind": kind,
        "watermark": least.watermark_text() if least else None,
        "load_age_s": load_age, "load_age": F.age_text(load_age),
        "data_age_s": None if data_age is None else round(data_age, 3), "data_age": F.age_text(data_age),
        "last_success_at": None if None in successes else min(successes, default=None),
        "last_run_id": None,
        "last_run_at": max((r["last_run_at"] for r in mine.values() if r["last_run_at"]), default=None),
        "last_outcome": "failed" if "failed" in outcomes else "never run" if "never run" in outcomes else "ok",
        "last_source_records": _sum(mine.values(), "last_source_records"),
        "last_loaded": _sum(mine.values(), "last_loaded"), "last_skipped": _sum(mine.values(), "last_skipped"),
        "last_rejected": _sum(mine.values(), "last_rejected"),
        "last_duration_s": max((r["last_duration_s"] or 0 for r in mine.values()), default=None),
        "last_error": next((r["last_error"] for r in mine.values() if r["last_error"]), None),
        "quarantined": sum(r["quarantined"] or 0 for r in mine.values()),
        "buckets": bucket_rows, "lag": None,
    }
