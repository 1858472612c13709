"""Verify one stream: plan the windows, compare digests, bisect, name keys, optionally repair.

The result is one JSON-ready dict per stream; :func:`record` keeps its summary
(:func:`record_doc`: ``verified_through``, the watermark checked up to, ``verified_at``,
``outcome`` and what differed) with the stream, for ``status`` and ``check --verified``.

*Moving* data is not a defect. Three things can change while verify runs: a load commits (the
stream's state ``version`` moves), the source changes, or both. Every differing key is looked up
a second time at the end; a key whose cursor changed on either side between the two looks is
**moving**, and when the state moved during the run, differences in the last window (the one
being loaded) are moving too. A key the source updated past the watermark is **pending**.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shlex
import time
from dataclasses import dataclass, field
from typing import Callable

import pyarrow as pa

from .. import events
from .. import values as V
from ..errors import HiwaterError, UsageError
from ..keyhash import parse_name
from ..targets import open_target
from ..targets.base import Verified
from ..urls import redact
from . import digest as D
from . import sides as S
from .bisect import (CLASSES, DEFECTS, EXTRA, MISSING, MOVING, STALE, Diff, bisect, both, classify, differing,
                     whole_digests)
from .plan import Plan, make_plan, parse_step

SAMPLE = 10


@dataclass(frozen=True)
class Api:
    """What verify needs of the rest of hiwater, handed in by :func:`hiwater.api.verify` (so this
    package never imports the API that imports it): the public ``state_show``,
    ``quarantine_list`` and ``load``, and the project file's reader."""

    state_show: Callable
    quarantine_list: Callable
    load: Callable
    load_project: Callable


@dataclass
class Request:
    """What to verify for one stream, from the command line, the API or ``verify = "…"``."""

    by: object = None
    since: object = None
    until: object = None
    content: bool = False
    repair: bool = False
    prune_extra: bool = False

    def merged(self, defaults: str | None) -> "Request":
        """The stream's ``verify = "--by 1d --content"`` defaults under this request's own values."""
        if not defaults:
            return self
        base = parse_defaults(defaults)
        return Request(self.by if self.by is not None else base.by,
                       self.since if self.since is not None else base.since,
                       self.until if self.until is not None else base.until,
                       self.content or base.content, self.repair or base.repair,
                       self.prune_extra or base.prune_extra)


def parse_defaults(text: str) -> Request:
    """``verify = "…"`` in hiwater.toml: the verify options as they are written on the command line."""
    words = shlex.split(text)
    out = Request()
    i = 0
    while i < len(words):
        w = words[i]
        name, eq, val = w.partition("=")
        if name in ("--by", "--since", "--until"):
            if not eq:
                i += 1
                if i >= len(words):
                    raise UsageError(f"verify = {text!r}: {name} needs a value")
                val = words[i]
            setattr(out, name[2:], val)
        elif w in ("--content", "--repair", "--prune-extra"):
            setattr(out, w[2:].replace("-", "_"), True)
        else:
            raise UsageError(f"verify = {text!r}: unknown option {w!r}",
                             hint="verify takes --by, --since, --until, --content, --repair, --prune-extra")
        i += 1
    if out.prune_extra and not out.repair:
        raise UsageError(f"verify = {text!r}: --prune-extra goes with --repair")
    return out


@dataclass
class Stream:
    """One stream as verify needs it: its state (``hiwater.api.state_show``) and where its source is."""

    state: dict
    source: dict                       # input / source_url / source_table / query / format / data
    db: str | None = None
    target: str | None = None
    defaults: str | None = None        # the project's verify = "…"
    load: dict = field(default_factory=dict)   # the stream's own load options, for --repair


def verify_stream(st: Stream, req: Request, *, api) -> dict:
    """Verify (and with ``req.repair``, repair) one stream; return its result record."""
    started = time.monotonic()
    s = st.state
    name, kind, key, tz = s["stream"], s["kind"], list(s["key"]), V.zone(s["assume_tz"])
    out = _blank(st, req)
    if kind is None or s.get("watermark_value") is None:
        out["note"] = "nothing loaded yet: nothing to verify"
        return _finish(out, started)
    step = parse_step(req.by, kind) if req.by is not None else None
    hi = s["watermark_value"]
    if req.until is not None:
        hi = min(hi, V.parse_bound(req.until, kind, tz, "--until")[0])
    lo = V.parse_bound(req.since, kind, tz, "--since")[0] if req.since is not None else None
    if lo is not None and lo > hi:
        raise UsageError(f"--since {req.since}: after the range verify checks (up to {_fmt(hi, s)})")
    out["until"], out["until_value"], out["verified_through"] = _fmt(hi, s), hi, _fmt(hi, s)
    url = S.target_url(st.db, st.target)
    content = [c for c in S.target_columns(url, s["table"]) if c not in key and c != s["cursor"]] \
        if req.content else None
    quarantined = {D.key_text(json.loads(q["key"])) for q in api.quarantine_list(stream=name, db=st.db,
                                                                                  target=st.target)
                   if q.get("key")}
    tgt = S.target_side(url, s["table"], key, content=content)
    try:
        src = _source_side(st, s, key, kind, content)
    except BaseException:
        tgt.close()
        raise
    try:
        result = _compare(src, tgt, s, lo, hi, step, quarantined, out)
        out["bytes_fetched"] = {"source": src.fetched, "target": tgt.fetched}
    finally:
        src.close()
        tgt.close()
    if _version(api.state_show(stream=name, db=st.db, target=st.target), name) != s["version"]:
        out["state_moved"] = True
        _moving_last_window(result, out)
    _summarise(out, result)
    if req.repair and not out["equal"]:
        out["repair"] = _repair(st, req, out, result, api)
        out["repaired"] = repaired(out, req.prune_extra)
    return _finish(out, started)


def repaired(out: dict, prune_extra: bool) -> bool:
    """Whether ``--repair`` left nothing to fix: every defect found is of a class it acts on
    (missing and stale keys reloaded; extra keys deleted with ``--prune-extra``) and the windows
    verified again are equal. A changed or ahead key is never repaired (docs/verify.md)."""
    after = (out.get("repair") or {}).get("after")
    acted = {MISSING, STALE} | ({EXTRA} if prune_extra else set())
    left = [c for c in DEFECTS if c not in acted and out["keys"].get(c)]
    return bool(after and after.get("equal")) and not left


def _version(states: list, name: str):
    """A stream's state version (a bucketed stream's: every bucket's, see :func:`one_per_stream`)."""
    return states[0]["version"] if len(states) == 1 and states[0]["stream"] == name else [s["version"] for s in states]


def _blank(st: Stream, req: Request) -> dict:
    s, src = st.state, st.source
    if src.get("source_url"):
        where = f"{redact(src['source_url'])} ({src.get('source_table') or 'query'})"
    else:
        where = src.get("input") or "data"
    return {"stream": s["stream"], "table": s["table"], "source": where,
            "target": st.db if st.db is not None else redact(st.target or ""),
            "key": list(s["key"]), "cursor": s["cursor"], "kind": s["kind"], "content": bool(req.content),
            "since": None, "since_value": None, "until": None, "until_value": None, "by": None,
            "windows": {"checked": 0, "equal": 0, "differing": 0, "moving": 0}, "differing_windows": [],
            "keys": {c: 0 for c in CLASSES}, "sample": {c: [] for c in CLASSES},
            "rounds": 0, "bytes_fetched": {"source": 0, "target": 0}, "state_moved": False,
            "equal": True, "outcome": "equal", "verified_through": None,
            "verified_at": None, "duration_s": 0.0}


def _source_side(st: Stream, s: dict, key, kind, content):
    src = st.source
    common = dict(key=key, cursor=s["cursor"], kind=kind, assume_tz=s["assume_tz"], content=content)
    if src.get("data") is not None:
        return S.data_side(src["data"], **common)
    if src.get("source_url"):
        return S.source_side(src["source_url"], table=src.get("source_table"), query=src.get("query"), **common)
    if src.get("input"):
        return S.files_side(src["input"], fmt=src.get("format"), **common)
    raise UsageError(f"stream {s['stream']!r}: verify needs its source",
                     hint="give --input PATH or --source URL (with --source-table or --query), "
                          "or run verify in the project that names the stream's source")


@dataclass
class Compared:
    plan: Plan | None
    diffs: list
    window_of: dict = field(default_factory=dict)  # window index -> (source digest, target digest)


def _compare(src, tgt, s, lo, hi, step, quarantined, out) -> Compared:
    kind = s["kind"]
    S.agree(src, tgt)
    whole_s, whole_t, span_s = whole_digests(src, tgt, lo, hi)
    out["rounds"] = 1
    # The plan starts at --since, else at the source's smallest cursor (cut at a round value):
    # a target table has no index on the cursor, and its span would cost a scan of its own.
    start = lo if lo is not None else span_s[0] if span_s is not None else None
    if start is None and whole_t[0]:   # the source holds nothing: the target's span it is
        start = tgt.span(lo, hi)[0]
    if start is None or not (whole_s[0] or whole_t[0]):
        out["since"] = _fmt(lo, s) if lo is not None else None
        return Compared(None, [])
    plan = make_plan(start, hi, kind=kind, step=step, align=lo is None)
    ws, wt = {}, {}
    if whole_s != whole_t:  # (equal: so is every window, and the plan only says how it was cut)
        ws, wt = both(lambda: src.windows(plan), lambda: tgt.windows(plan))
        out["rounds"] = 2
        if sum(n for n, _ in wt.values()) != whole_t[0]:  # the target holds rows below the source's
            plan = make_plan(min(start, tgt.span(lo, hi)[0]), hi, kind=kind, step=step, align=True)
            ws, wt = both(lambda: src.windows(plan), lambda: tgt.windows(plan))
            out["rounds"] = 3
    out["since"], out["since_value"] = _fmt(plan.lo, s), plan.lo
    out["by"] = _step_text(plan.step, kind)
    bad = differing(ws, wt)
    out["windows"].update(checked=plan.count, equal=plan.count - len(bad), differing=len(bad))
    found = bisect(src, tgt, plan, [(i, max(ws.get(i, (0, 0))[0], wt.get(i, (0, 0))[0])) for i in bad])
    out["rounds"] += found.rounds
    lone_s = [r.key for t, r in found.source.items() if t not in found.target]
    lone_t = [r.key for t, r in found.target.items() if t not in found.source]
    src_now, tgt_now = src.lookup(lone_t), tgt.lookup(lone_s)
    diffs = classify(found, src_now, tgt_now, until=hi, quarantined=quarantined)
    diffs = _second_look(src, tgt, diffs)
    out["rounds"] += 1 if found.source or found.target else 0
    for i in bad:
        a, b = plan.window(i)
        out["differing_windows"].append({
            "index": i, "from": _fmt(a, s), "to": _fmt(b, s), "from_value": a, "to_value": b,
            "source": {"count": ws.get(i, (0, 0))[0]}, "target": {"count": wt.get(i, (0, 0))[0]}})
    return Compared(plan, diffs)


def _second_look(src, tgt, diffs: list[Diff]) -> list[Diff]:
    """Look the named keys up again: a key whose cursor moved on either side since the first
    look was being written while verify ran, so it is *moving*, not a defect."""
    named = [d for d in diffs if d.kind in DEFECTS]
    if not named:
        return diffs
    keys = [d.key for d in named]
    src_now, tgt_now = src.lookup(keys), tgt.lookup(keys)
    out = []
    for d in diffs:
        if d.kind in DEFECTS:
            t = D.key_text(d.key)
            if (src_now.get(t), tgt_now.get(t)) != (d.source, d.target) and d.kind != "changed":
                d = Diff(MOVING, d.key, src_now.get(t), tgt_now.get(t))
        out.append(d)
    return out


def _moving_last_window(result: Compared, out: dict) -> None:
    """A load committed while verify ran: what differs in the window it was loading is moving."""
    if result.plan is None:
        return
    last = result.plan.count - 1
    moved = []
    for d in result.diffs:
        cur = d.source if d.source is not None else d.target
        if d.kind in DEFECTS and cur is not None and result.plan.index(min(cur, result.plan.hi)) == last:
            d = Diff(MOVING, d.key, d.source, d.target)
        moved.append(d)
    result.diffs = moved


def _summarise(out: dict, result: Compared) -> None:
    for c in CLASSES:
        out["keys"][c] = 0
        out["sample"][c] = []
    plan = result.plan
    windows_with_defects, moving_windows = set(), set()
    for d in result.diffs:
        out["keys"][d.kind] += 1
        if len(out["sample"][d.kind]) < SAMPLE:
            out["sample"][d.kind].append({"key": list(d.key), "source": _fmt(d.source, out),
                                         "target": _fmt(d.target, out)})
        if plan is not None:
            for cur in (d.source, d.target):
                i = plan.index(cur) if cur is not None else None
                if i is not None:
                    (windows_with_defects if d.kind in DEFECTS else moving_windows).add(i)
    out["windows"]["moving"] = len(moving_windows - windows_with_defects)
    defects = sum(out["keys"][c] for c in DEFECTS)
    out["equal"] = defects == 0
    out["outcome"] = "differs" if defects else "moving" if out["keys"][MOVING] else "equal"
    out["diffs"] = result.diffs


def _repair(st: Stream, req: Request, out: dict, result: Compared, api) -> dict:
    """Reload the windows that hold a missing or stale key's source version through the loader
    (a bounded backfill, ``--since``/``--until``, with its guarantees), delete extra keys with
    ``--prune-extra``, then verify those windows again.

    A *changed* key (same cursor, other content) is not reloaded: the loader never rewrites a row
    with an equal cursor, which is its guarantee; such a table needs ``--full-load``."""
    plan = result.plan
    s = st.state
    windows = sorted({plan.index(d.source) for d in result.diffs
                      if d.kind in (MISSING, STALE) and d.source is not None and plan.index(d.source) is not None})
    reloaded = []
    for i in windows:
        a, b = plan.window(i)
        opts = dict(st.load)
        opts.update(stream=s["stream"], table=s["table"], key=",".join(s["key"]), cursor=s["cursor"],
                    since=_fmt(a, s), until=_fmt(b + 1, s))
        if s.get("buckets"):  # a bucketed stream is backfilled as it loads: every bucket its share
            opts["buckets"] = s["buckets"]
        if st.source.get("input"):
            opts["reread_files"] = True  # a file the manifest holds as read is read again
        summary = _load(st, opts, api)
        reloaded.append({"from": _fmt(a, s), "to": _fmt(b, s), "loaded": summary.get("loaded"),
                         "inserted": summary.get("inserted"), "updated": summary.get("updated")})
    pruned = 0
    extra = [d.key for d in result.diffs if d.kind == EXTRA]
    if extra and req.prune_extra:
        pruned = _prune(st, extra, out)
    checked = [plan.window(i) for i in windows] + [
        w for d in result.diffs if d.kind == EXTRA for w in [plan.window(plan.index(d.target))]]
    if not checked:
        return {"windows_reloaded": [], "extra_deleted": 0, "extra_kept": len(extra), "after": None}
    again = verify_stream(st, Request(since=_fmt(min(a for a, _ in checked), s),
                                      until=_fmt(max(b for _, b in checked), s),
                                      content=req.content, by=out["by"]), api=api)
    return {"windows_reloaded": reloaded, "extra_deleted": pruned,
            "extra_kept": 0 if req.prune_extra else len(extra), "after": _strip(again)}


def _load(st: Stream, opts: dict, api) -> dict:
    src = st.source
    kw = {k: opts[k] for k in opts if k not in ("input", "source_url", "source_table", "query", "db", "target")}
    if src.get("data") is not None:
        summary = api.load(src["data"], db=st.db, target=st.target, **kw)
    elif src.get("source_url"):
        summary = api.load(source_url=src["source_url"], source_table=src.get("source_table"),
                           query=src.get("query"), db=st.db, target=st.target, **kw)
    else:
        kw.setdefault("format", src.get("format"))
        summary = api.load(src["input"], db=st.db, target=st.target, **kw)
    return summary.to_dict()


def _prune(st: Stream, extra: list, out: dict) -> int:
    """Delete extra keys: under the stream's lock, after looking once more that the source still
    lacks each one and the target row is still the one verify saw (a guarded delete)."""
    s = st.state
    with open_target(db=st.db, target=st.target) as tgt, tgt.lock(s["stream"], 30):
        src = _source_side(st, s, list(s["key"]), s["kind"], None)
        try:
            still = src.lookup(extra)
        finally:
            src.close()
        gone = [k for k in extra if D.key_text(k) not in still]
        if not gone:
            return 0
        with tgt.begin(s["stream"], s["table"], tuple(s["key"])) as tx:
            return tx.delete([pa.array([k[i] for k in gone]) for i in range(len(s["key"]))])


def _strip(result: dict) -> dict:
    return {k: v for k, v in result.items() if k != "diffs"}


def _finish(out: dict, started: float) -> dict:
    out.pop("diffs", None)
    out["verified_at"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    out["duration_s"] = round(time.monotonic() - started, 3)
    return out


def _fmt(value, s):
    """A normalised cursor as text: ISO-8601 in UTC for timestamps, as written for the others."""
    return V.format_value(value, s["kind"], False, dt.timezone.utc)


def _step_text(step: int, kind: str) -> str:
    if kind == V.INT:
        return str(step)
    per_us = V.scale(kind)
    for unit, us in (("d", V.US_PER_DAY), ("h", 3_600_000_000), ("m", 60_000_000), ("s", 1_000_000)):
        if step % (us * per_us) == 0:
            return f"{step // (us * per_us)}{unit}"
    return f"{step}ns" if per_us > 1 else f"{step}us"


def verify_streams(streams=None, *, api, project=None, db=None, target=None, input=None, source_url=None,
                   source_table=None, query=None, format=None, data=None, **request) -> list[dict]:
    """Resolve the streams and their sources, then verify each (see :func:`hiwater.verify`)."""
    if isinstance(streams, str):
        streams = [streams]
    req = Request(**request)
    if req.prune_extra and not req.repair:
        raise UsageError("--prune-extra goes with --repair (it deletes extra keys while repairing)")
    explicit = {"input": input, "source_url": source_url, "source_table": source_table, "query": query,
                "format": format, "data": data}
    if db is not None or target is not None or any(v is not None for v in explicit.values()):
        todo = _explicit(streams, api, db, target, explicit)
    else:
        todo = _from_project(streams, api, project)
    out = []
    for st in todo:
        result = verify_stream(st, req.merged(st.defaults), api=api)
        record(st, result)
        out.append(result)
    return out


RECORD_SAMPLE = 3  # keys per class kept in the recorded document


def record_doc(result: dict) -> dict:
    """The document recorded with the stream (``status``, ``check --verified``, the status page):
    the result's figures without the per-window detail, a sample of at most
    :data:`RECORD_SAMPLE` keys per class, and ``repaired`` (a repair ran and left nothing to fix:
    :func:`repaired`)."""
    return {"verified_at": result["verified_at"], "verified_through": result["verified_through"],
            "since": result["since"], "until": result["until"], "by": result["by"], "content": result["content"],
            "outcome": result["outcome"], "equal": result["equal"], "windows": dict(result["windows"]),
            "keys": dict(result["keys"]),
            "sample": {c: v[:RECORD_SAMPLE] for c, v in result["sample"].items() if v},
            "rounds": result["rounds"], "bytes_fetched": dict(result["bytes_fetched"]),
            "duration_s": result["duration_s"], "state_moved": result["state_moved"],
            "repaired": bool(result.get("repaired")), "note": result.get("note")}


def record(st: Stream, result: dict) -> None:
    """Record the result with the stream, under its own name, beside its state (the ``Verified``
    fact: a row of ``_hiwater_verify``, a Delta log row). No stream lock is taken: the record is
    its own small write and never waits for a load's, nor makes one fail."""
    s = st.state
    try:
        with open_target(db=st.db, target=st.target) as tgt, \
                tgt.begin(s["stream"], s["table"], tuple(s["key"])) as tx:
            tx.record(Verified(s["stream"], record_doc(result)))
    except HiwaterError as exc:  # the result stands (printed, exit code); `check --verified` sees it missing
        result["recorded"] = False
        events.emit("warning", f"[{s['stream']}] the verify result was not recorded: {exc}",
                    level=logging.WARNING, stream=s["stream"])
    else:
        result["recorded"] = True


def _explicit(streams, api, db, target, src: dict) -> list[Stream]:
    if db is None and target is None:
        target = os.environ.get("HIWATER_TARGET_URL") or None
    if db is None and target is None:
        raise UsageError("verify needs the target: give --db PATH or --target URL (or run it in a project)")
    states = one_per_stream(api.state_show(db=db, target=target)) if not streams else \
        [one_per_stream(api.state_show(db=db, target=target, stream=n), n)[0] for n in streams]
    if not states:
        raise UsageError("the target holds no stream to verify", hint="`hiwater state show` lists the streams")
    if src["input"] is None and src["source_url"] is None and src["data"] is None:
        raise UsageError("verify needs the source: give --input PATH or --source URL",
                         hint="or run it in the project (hiwater.toml) that names each stream's source")
    if len(states) > 1 and not (src["source_url"] and not src["source_table"] and not src["query"]):
        raise UsageError(f"{len(states)} streams, one source: name the stream to verify",
                         hint="hiwater verify STREAM --input …, or give --source URL alone (each stream "
                              "then reads the source table of its own name)")
    out = []
    for s in states:
        one = {k: v for k, v in src.items() if v is not None}
        if one.get("source_url") and not one.get("source_table") and not one.get("query"):
            one["source_table"] = s["table"]
        out.append(Stream(s, one, db=db, target=target))
    return out


def _from_project(streams, api, project) -> list[Stream]:
    proj = api.load_project(project)
    out = []
    for cfg in proj.select(streams):
        load = dict(cfg.load)
        db, target = load.pop("db", None), load.pop("target", None)
        source = {k: load.pop(k) for k in ("input", "source_url", "source_table", "query") if k in load}
        if "format" in load:
            source["format"] = load["format"]
        name = load.get("stream", cfg.name)
        state = one_per_stream(api.state_show(db=db, target=target, stream=name), name)[0]
        out.append(Stream(state, source, db=db, target=target, defaults=cfg.verify, load=load))
    return out


def one_per_stream(states: list, name: str | None = None) -> list:
    """The states as verify sees them: a bucketed stream (docs/scale-out.md) is ONE stream, under
    its own name, checked up to its least bucket's watermark (every bucket has loaded up to there)
    and recorded under that name, with ``buckets`` (their count: ``--repair`` loads as the stream
    does). ``name``: the one stream asked for."""
    groups: dict = {}
    for s in states:
        p = parse_name(s["stream"])
        base = p[0] if p is not None and (name is None or name != s["stream"]) else s["stream"]
        groups.setdefault(base, []).append(s)
    out = []
    for base, group in groups.items():
        if len(group) == 1 and group[0]["stream"] == base:
            out.append(group[0])
            continue
        held = [g for g in group if g["watermark_value"] is not None]
        least = min(held, key=lambda g: g["watermark_value"]) if len(held) == len(group) else None
        one = dict(least if least is not None else group[0], stream=base, version=[g["version"] for g in group],
                   buckets=max(parse_name(g["stream"])[2] for g in group))
        if least is None:
            one.update(watermark=None, watermark_value=None)
        out.append(one)
    return out
