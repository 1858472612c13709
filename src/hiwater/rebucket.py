"""``hiwater load … --buckets M --rebucket``: change a stream's bucket count in one command
(docs/scale-out.md, "Changing the number of buckets").

Before the run, the buckets of another count (or the plain stream, when it was not bucketed)
are forgotten, one by one, each in its own transaction: their states, histories, quarantines and
file manifests go, the table stays. Then the run goes on as the new count's first run: on Delta
the rows are first moved to their new buckets' partitions (:func:`hiwater.buckets.plan`), and
every new bucket re-reads the whole source and finds each row the table holds by its key.

Crash-safe by being idempotent: a kill at any point leaves either some old buckets not yet
forgotten (the same command forgets them), or none left and some new buckets committed (the
same command is then a plain run of the new count, whose buckets without a state re-read
everything). No step writes a row of the table except the Delta placement (one commit, itself
idempotent) and the run's own commits, so no row is lost or duplicated.

The quarantine of the old buckets is forgotten with them: the re-read meets every invalid record
the source still holds and quarantines it again (once, in its new bucket). A record the source no
longer holds would be lost, so when the old buckets hold quarantined records the command refuses
unless ``--forget-quarantine`` says so (replay or export them first).
"""

from __future__ import annotations

import dataclasses
import os
import signal

from .errors import UsageError
from .keyhash import parse_name
from .spec import StreamSpec, connected
from .targets.base import Dropped


def rebucket(spec: StreamSpec) -> StreamSpec:
    """Forget the stream's buckets of any other count than ``spec``'s; the spec to run, with a
    notice saying what was forgotten (unchanged when the count is already this one)."""
    opts, stream, n = spec.options, spec.stream, spec.options.buckets
    if parse_name(stream) is not None:
        raise UsageError(f"--stream {stream!r} --rebucket: a name ending in #B/N is a bucket's; give the stream's own name")
    with connected(spec.db, spec.target) as tgt:
        names = [s.stream for s in tgt.ledger.states()]
        old = _other_counts(names, stream, n)
        if not old:
            return spec
        held = sum(len(tgt.ledger.quarantine(name)) for name in old)
        if held and not opts.forget_quarantine:
            raise UsageError(f"--rebucket: stream {stream!r} holds {held} quarantined record(s) in its current buckets; "
                             f"changing the count forgets them (the re-read quarantines again those the source "
                             f"still holds)", hint=f"replay or export them first (`hiwater quarantine list --stream "
                             f"{stream}`), then add --forget-quarantine")
        was = 1 if stream in old else parse_name(old[-1])[2]
        for i, name in enumerate(old):
            _kill_point(i)
            with tgt.lock(name, opts.lock_timeout.seconds), tgt.begin(name) as tx:
                tx.record(Dropped(None))
        _kill_point(len(old))
    text = (f"re-bucketed stream {stream!r} from {was} to {n} bucket(s): the old "
            f"{'buckets were' if was > 1 else 'stream was'} forgotten (the table stays"
            + (f"; {held} quarantined record(s) forgotten" if held else "")
            + "), so this run re-reads the whole source")
    return dataclasses.replace(spec, notices=tuple(spec.notices) + (text,))


def _other_counts(names: list, stream: str, n: int) -> list[str]:
    """The stream names of ``stream`` under another bucket count than ``n`` (the plain stream
    itself counts as 1)."""
    out = [name for name in names if (p := parse_name(name)) is not None and p[0] == stream and p[2] != n]
    if stream in names and n != 1:
        out.append(stream)
    return sorted(out, key=lambda s: (s != stream, s))


def _kill_point(forgotten: int) -> None:
    """Test-only: ``HIWATER_REBUCKET_KILL=<k>`` SIGKILLs this process once ``k`` old streams are
    forgotten (tests/reliability/test_buckets_kill.py)."""
    if os.environ.get("HIWATER_REBUCKET_KILL") == str(forgotten):
        os.kill(os.getpid(), signal.SIGKILL)
