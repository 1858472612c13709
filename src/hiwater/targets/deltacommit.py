"""A bucket's commit into the Delta table its stream's buckets share (docs/scale-out.md,
"One file, one writer").

The buckets of one stream run at once, each merging into its own ``_hiwater_bucket`` partition.
delta-rs's conflict checker lets two MERGEs into different partitions commit side by side when
each MERGE names its partition, but not every commit does: the commit that carries only a
bucket's watermark (no row changed) is an append of nothing, which delta-rs counts as reading
the whole table, and any other bucket's MERGE that rewrote a file in between made it fail ("a
concurrent transaction deleted data this operation read": the bucket model test on Delta, seen
as a bucket failing its run). A schema change by one bucket (new columns) likewise fails every
commit of the others made on the schema before it.

So a bucket does not commit on its run's snapshot: it commits on a fresh one, after checking
that nothing it decided on has moved since its run read the snapshot. Its decisions were made
on its own partition and its own watermark only, so they stand on any snapshot whose partition
holds the same files and whose ``hiwater:<bucket>`` app transaction is the same; commits of the
other buckets in between change neither. When the check fails (another run of the same bucket
committed, or its partition was rewritten) the bucket fails alone with nothing applied, and a
rerun completes it (SPEC §3/§11: never a key twice, never a watermark ahead of its data). When
the commit on the fresh snapshot itself loses a race, it is checked and made again.
"""

from __future__ import annotations

import random
import time
from typing import Callable

import pyarrow as pa

from .deltatypes import BUCKET_COL, add_fields, is_conflict

COMMIT_TRIES = 12  # a bucket's commit on a fresh snapshot, checked each time (each retry waits a little more)


class PartitionMoved(Exception):
    """The bucket's partition or watermark changed since its run read them: its commit would be
    decided on stale data (the message reads as a conflict: the run lost the race)."""


def partitioned(dt) -> bool:
    """Is ``dt`` a bucketed stream's table, partitioned by bucket?"""
    return dt is not None and BUCKET_COL in dt.metadata().partition_columns


def partition_files(dt, bucket: int) -> frozenset:
    """The files of bucket ``bucket``'s partition at ``dt``'s version (none: no table yet)."""
    if dt is None:
        return frozenset()
    return frozenset(dt.file_uris(file_pruning_predicate=f"`{BUCKET_COL}` = {int(bucket)}"))


def commit_bucket(dl, uri: str, storage: dict | None, pinned, *, app: str, txn: int, bucket: int,
                  schema: pa.Schema | None, file_size: int, apply: Callable) -> None:
    """Make bucket ``bucket``'s commit (``apply(dt)``, which carries app transaction ``app`` =
    ``txn``) on a fresh snapshot of the table at ``uri``, provided the bucket's partition and
    watermark there are what its run read at ``pinned`` (``None``: no table then). Makes the
    table (partitioned by bucket) when there is none, adds the columns of ``schema`` it lacks;
    raises :class:`PartitionMoved` or delta-rs's conflict when it cannot commit."""
    base = partition_files(pinned, bucket)
    seen = pinned.transaction_version(app) if pinned is not None else None
    for attempt in range(COMMIT_TRIES):
        try:
            dt = _fresh(dl, uri, storage, schema, file_size)
            held = dt.transaction_version(app)
            if held == txn:
                return  # an earlier attempt landed though delta-rs reported an error after it
            if held != seen or partition_files(dt, bucket) != base:
                raise PartitionMoved(f"a concurrent commit changed bucket {bucket}'s partition or watermark "
                                     f"since this run read it")
            if schema is not None:
                have = set(pa.schema(dt.schema().to_arrow()).names)
                add_fields(dl, dt, [f for f in schema if f.name not in have])
            apply(dt)
            return
        except PartitionMoved:
            raise
        except Exception as exc:  # noqa: BLE001 - delta-rs raises its own classes
            if attempt + 1 == COMMIT_TRIES or not is_conflict(exc):
                raise
            time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))


def _fresh(dl, uri: str, storage: dict | None, schema: pa.Schema | None, file_size: int):
    """The table at its latest version; made empty, partitioned by bucket, when there is none
    (buckets that make it at once: one creation wins, the others fail and try again)."""
    if not dl.DeltaTable.is_deltatable(uri, storage_options=storage):
        if schema is None:
            raise PartitionMoved("the table is gone")
        fields = list(schema) + ([] if BUCKET_COL in schema.names else [pa.field(BUCKET_COL, pa.int64())])
        dl.DeltaTable.create(uri, pa.schema(fields), mode="ignore", partition_by=[BUCKET_COL],
                             storage_options=storage, configuration={"delta.targetFileSize": str(file_size)})
    return dl.DeltaTable(uri, storage_options=storage)
