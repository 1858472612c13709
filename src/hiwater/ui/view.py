"""What the status page shows, read through the public API only (:mod:`hiwater.api`).

The page may look at a project file (every target it names) or at one target (``--db`` /
``--target``). :class:`View` hides that difference: each of its methods asks the API once per
target, so a target that does not answer shows as an error beside the others instead of
taking the whole page down. Every string it hands out has URL passwords masked
(:func:`mask`): a stream's source or an error message may quote a connection URL.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from .. import api
from ..durations import parse_duration
from ..errors import HiwaterError, TargetError, UsageError
from ..freshness import verdict
from ..keyhash import parse_name
from ..project import load_project
from ..spec import absent
from ..targets import open_target
from ..urls import redact

REASONS = ("invalid", "future", "late")
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def mask(value):
    """``value`` (a row, a list, a string) with every password in a URL it quotes replaced by ``***``."""
    if isinstance(value, str):
        return _URL.sub(lambda m: redact(m.group(0)), value) if "://" in value else value
    if isinstance(value, dict):
        return {k: mask(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask(v) for v in value]
    return value


@dataclass
class Snapshot:
    """One reading of every stream: ``rows`` as ``hiwater status --json`` gives them (buckets
    included), and ``errors``: the targets that did not answer, with the message."""

    rows: list = field(default_factory=list)
    errors: list = field(default_factory=list)
    now: float = 0.0

    def streams(self) -> list:
        """One row per stream: a bucketed stream's buckets fold into its own row (their names
        stay in its ``buckets``), each with its freshness ``verdict`` (``ok``/``warn``/``error``,
        or ``None`` without a limit) judged on the load age, as ``hiwater check`` does."""
        members = {b["stream"] for r in self.rows for b in r.get("buckets") or ()}
        out = []
        for r in self.rows:
            if r["stream"] in members:
                continue
            out.append({**r, "verdict": _verdict(r)})
        return out


def _verdict(row) -> str | None:
    warn, error = row.get("warn_after"), row.get("error_after")
    if warn is None and error is None:
        return None
    return verdict(row.get("load_age_s"),
                   parse_duration(warn, "warn-after") if warn else None,
                   parse_duration(error, "error-after") if error else None)


class NotFound(HiwaterError):
    """A page or stream the request names does not exist (HTTP 404)."""


class View:
    """The streams of a project file (``project``) or of one target (``db`` / ``target``)."""

    def __init__(self, *, project=None, db=None, target=None):
        self.project, self.db, self.target = project, db, target
        if db is None and target is None:
            load_project(project)  # a broken project file stops `hiwater ui` before it serves

    # --- targets ---------------------------------------------------------------------------
    def _groups(self) -> list:
        """``[(api keywords, stream names or None)]``: one entry per target."""
        if self.db is not None or self.target is not None:
            return [({"db": self.db, "target": self.target}, None)]
        groups: dict = {}
        for cfg in load_project(self.project).streams.values():
            kw = cfg.target_kw
            groups.setdefault((kw["db"], kw["target"]), []).append(cfg.name)
        return [({"db": d, "target": t}, names) for (d, t), names in groups.items()]

    def _where(self, stream: str) -> dict:
        """The target keywords of ``stream`` (a stream, or one of its buckets)."""
        for kw, names in self._groups():
            if names is None or _base(stream) in names:
                return kw
        raise NotFound(f"no stream named {stream!r} in the project")

    # --- reading ---------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        """Every stream's status row (``hiwater status --json``), one API call per target."""
        snap = Snapshot(now=time.time())
        now = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(snap.now)) + f".{int(snap.now % 1 * 1e6):06d}Z"
        for kw, names in self._groups():
            try:
                if names is None:
                    snap.rows += api.status(now=now, **kw)
                else:  # a target that does not answer is the page's error, not a row
                    rows = api.status(names, project=self.project, now=now)
                    down = [r for r in rows if r["last_outcome"] == api.UNREACHABLE]
                    if down:
                        raise TargetError(down[0]["last_error"])
                    snap.rows += rows
            except HiwaterError as exc:
                snap.errors.append({"target": redact(kw["target"] or kw["db"] or "(memory)"),
                                    "message": str(exc)})
        snap.rows, snap.errors = mask(snap.rows), mask(snap.errors)
        return snap

    def stream(self, name: str, limit: int = 500) -> dict:
        """One stream: its status row, its runs (each bucket's, for a bucketed stream; the newest
        ``limit`` history rows of each) and its state rows."""
        kw = self._where(name)
        try:
            rows = api.status([name], **(kw if self._direct() else {"project": self.project}))
        except UsageError as exc:
            raise NotFound(str(exc)) from None
        row = next((r for r in rows if r["stream"] == name), None)
        if row is None:
            raise NotFound(f"no stream named {name!r}")
        members = [b["stream"] for b in row.get("buckets") or ()] or [name]
        history, state = [], []
        for m in members:
            history += api.history(stream=m, limit=limit, **kw)
            if row["kind"] is not None:  # a stream that never ran has no state yet
                state += api.state_show(stream=m, **kw)
        history.sort(key=lambda h: (h["finished_at"] or "", h["run_id"], h["window_index"]))
        return mask({"status": row, "history": history, "state": state, "members": members})

    @staticmethod
    def _made(groups) -> list:
        """The groups whose target exists: one no run has made yet holds nothing to read (and a
        read must not make it)."""
        return [(kw, names) for kw, names in groups if absent(open_target(**kw)) is None]

    def _direct(self) -> bool:
        return self.db is not None or self.target is not None

    def history(self, stream=None, limit=None) -> list:
        """``hiwater history --json`` (every target of a project, its streams only)."""
        if stream is not None:
            return mask(api.history(stream=stream, limit=limit, **self._where(stream)))
        out = []
        for kw, names in self._made(self._groups()):
            rows = api.history(limit=limit, **kw)
            out += rows if names is None else [r for r in rows if _base(r["stream"]) in names]
        return mask(out)

    def quarantine(self, stream=None, reason=None, limit=None) -> list:
        """``hiwater quarantine list --json``; ``stream`` and ``reason`` are values handed to the API.
        A bucketed stream's name selects the records of all its buckets."""
        if reason is not None and reason not in REASONS:
            raise UsageError(f"reason {reason!r}: choose {', '.join(REASONS)}")
        out = []
        for kw, names in self._made([(self._where(stream), [stream])] if stream is not None else self._groups()):
            if names is None:
                out += api.quarantine_list(reason=reason, limit=limit, **kw)
                continue
            rows = api.quarantine_list(reason=reason, **kw)
            out += [r for r in rows if r["stream"] in names or _base(r["stream"]) in names]
        return mask(out[:limit] if limit else out)

    # --- acting ----------------------------------------------------------------------------
    def replay(self, stream: str, reason=None) -> dict:
        """``hiwater quarantine replay --stream STREAM [--reason R]`` (for a bucketed stream: for
        each of its buckets that holds records); the summed counts and each stream's run id."""
        kw = self._where(stream)
        names = sorted({r["stream"] for r in self.quarantine(stream, reason)})
        if not names:
            raise NotFound(f"stream {stream!r} has nothing in the quarantine"
                           + (f" with reason {reason!r}" if reason else ""))
        total = {"streams": names, "loaded": 0, "skipped": 0, "rejected": 0, "source_records": 0}
        for name in names:
            d = api.quarantine_replay(stream=name, reason=reason, **kw).to_dict(details=True)
            for k in ("loaded", "skipped", "rejected", "source_records"):
                total[k] += d.get(k) or 0
        return total


def _base(name: str) -> str:
    """A bucket's stream name (``orders#0/4`` → ``orders``); any other name as it is."""
    p = parse_name(name)
    return p[0] if p is not None else name
