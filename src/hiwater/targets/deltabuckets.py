"""A bucketed stream's Delta table: its rows placed in the partition of their key's bucket.

The buckets of one stream share its table, partitioned by ``_hiwater_bucket``, and each merges
inside its own partition (so their commits do not conflict). When the bucket count changes, the
rows are first moved to the partitions of their new buckets (docs/scale-out.md).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import UsageError
from ..keyhash import bucket_ids
from .delta import DeltaTarget
from .deltacommit import partitioned
from .deltatypes import BUCKET_COL, col

def by_bucket(target: DeltaTarget, table: str) -> bool:
    """Is ``table`` partitioned by bucket, or not made yet (its first bucket makes it so)?"""
    dt = target._table(table)
    return dt is None or partitioned(dt)


def place_buckets(target: DeltaTarget, table: str, key: tuple, n: int) -> int:
    """Move every row of a bucketed stream's table to the partition of its key's bucket of
    ``n``, in one commit; the rows moved. A bucket merges only inside its own partition, so
    after the count changed a row left in its old bucket's partition would be inserted a
    second time (docs/scale-out.md, changing the number of buckets). Idempotent: a table
    already placed for ``n`` reads its key columns and commits nothing."""
    dt = target._table(table)
    if dt is None or BUCKET_COL not in pa.schema(dt.schema().to_arrow()).names:
        return 0  # not partitioned (a plain stream's table): every merge matches by key across it
    held = dt.to_pyarrow_dataset().to_table(columns=list(key) + [BUCKET_COL])
    want = pa.array(bucket_ids(held, key, n), pa.int64())
    wrong = pc.invert(pc.equal(pc.fill_null(held.column(BUCKET_COL), -1), want))
    if not pc.any(wrong).as_py():
        return 0
    placed_by_text(held.schema, key)
    src = held.select(list(key)).filter(wrong).append_column("_hiwater_to", want.filter(wrong))
    on = " AND ".join(f"{col(k, 't')} = {col(k, 's')}" for k in key)
    target._run(lambda: dt.merge(src, on, source_alias="s", target_alias="t")
              .when_matched_update(updates={f"`{BUCKET_COL}`": "s._hiwater_to"}).execute(),
              f"moving the rows of {table!r} to their buckets of {n}")
    target._pins.pop(table, None)
    target._held_cache.pop(table, None)
    return src.num_rows


def placed_by_text(schema: pa.Schema, key: tuple) -> None:
    """Refuse to re-place rows whose key's stored type may print otherwise than the source sent
    it: a record's bucket is the hash of its key as sent (hiwater.keyhash), and only integers
    and strings are stored as they print."""
    for k in key:
        t = schema.field(k).type
        if not (pa.types.is_integer(t) or pa.types.is_string(t) or pa.types.is_large_string(t)):
            raise UsageError(f"changing the bucket count of a Delta table keyed by {k!r} ({t}): its rows cannot be "
                             f"moved to their new buckets (their stored values may hash otherwise than the source's)",
                             hint="reload it: hiwater stream drop STREAM --table, then run with the new --buckets")
