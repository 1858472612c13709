"""The Python API takes data (dicts, Arrow, pandas) with the guarantees of a file; every
exception is exported, carries exit_code and retryable, and survives pickling."""

from __future__ import annotations

import datetime as dt
import pickle

import pyarrow as pa
import pytest

import hiwater
from hiwater import errors as E

from conftest import NOW, SAMPLE, rows, watermark

SEED = {"source_records": 1, "loaded": 1, "skipped": 0, "previous_watermark": None,
        "new_watermark": "2025-01-15T08:00:00", "total_in_target": 1}
ONE = [{"id": 1, "modified_at": "2025-01-15T08:00:00"}]


def test_a_list_of_dicts_gives_the_seed_summary(tmp_path):
    s = hiwater.load(ONE, db=str(tmp_path / "t.db"))
    assert s.to_dict(details=False) == SEED
    assert s.table == "records" and any("table=" in w for w in s.warnings)  # the default table is said


def test_an_arrow_table_and_a_record_batch_give_the_seed_summary(tmp_path):
    tbl = pa.table({"id": [1], "modified_at": ["2025-01-15T08:00:00"]})
    assert hiwater.load(tbl, db=str(tmp_path / "a.db"), table="t").to_dict(details=False) == SEED
    assert hiwater.load(tbl.to_batches()[0], db=str(tmp_path / "b.db"), table="t").to_dict(details=False) == SEED


def test_a_record_batch_reader_is_read_once_and_kept_for_a_window(tmp_path):
    tbl = pa.table({"id": [1, 2, 3], "modified_at": ["2025-01-15T08:00:00", "2025-01-15T09:30:00",
                                                     "2025-01-15T11:00:00"]})
    reader = pa.RecordBatchReader.from_batches(tbl.schema, tbl.to_batches(max_chunksize=1))
    s = hiwater.load(reader, db=str(tmp_path / "t.db"), table="t", window="1h", batch_size=1)
    assert (s.loaded, s.new_watermark, len(s.windows)) == (3, "2025-01-15T11:00:00", 3)


def test_a_pandas_dataframe_gives_the_seed_summary(tmp_path):
    pd = pytest.importorskip("pandas", reason="pandas is not installed (pip install 'hiwater[pandas]')")
    df = pd.DataFrame(ONE)
    assert hiwater.load(df, db=str(tmp_path / "t.db"), table="t").to_dict(details=False) == SEED
    # pandas' own timestamps (nanoseconds) are a cursor too
    df2 = pd.DataFrame({"id": [2], "modified_at": pd.to_datetime(["2025-01-15T09:00:00"])})
    s = hiwater.load(df2, db=str(tmp_path / "t.db"), table="t")
    assert (s.loaded, s.new_watermark) == (1, "2025-01-15T09:00:00")


def test_a_generator_of_dicts_with_datetime_cursors_and_the_file_guarantees(tmp_path):
    db = tmp_path / "t.db"

    def gen():
        yield {"id": 1, "name": "007", "modified_at": dt.datetime(2025, 1, 15, 8, 0)}
        yield {"id": 2, "name": "b", "modified_at": "not a time"}          # invalid: quarantined
        yield {"id": 3, "name": "c", "modified_at": dt.datetime(2025, 1, 15, 9, 0)}

    s = hiwater.load(gen(), db=str(db), table="events", now=NOW)
    assert (s.loaded, s.counts.rejected, s.new_watermark) == (2, 1, "2025-01-15T09:00:00")
    assert rows(db)[1] == ("007", "2025-01-15T08:00:00")  # text kept as sent
    assert [q["reason"] for q in hiwater.quarantine_list(db=str(db))] == ["invalid"]
    # the same records again: nothing new (the watermark and the key comparison at work)
    again = hiwater.load([{"id": 1, "name": "007", "modified_at": "2025-01-15T08:00:00"}], db=str(db),
                         table="events", now=NOW)
    assert (again.loaded, again.skipped) == (0, 1) and watermark(db) is not None


def test_one_dict_is_a_usage_error():
    with pytest.raises(hiwater.UsageError, match="one dict"):
        hiwater.load({"id": 1, "modified_at": "2025-01-15T08:00:00"})


def test_a_path_object_is_a_file(tmp_path):
    s = hiwater.load(SAMPLE, db=str(tmp_path / "t.db"))
    assert s.table == "sample_input" and s.loaded == 5


# --- exceptions ------------------------------------------------------------------------------

ALL = ["HiwaterError", "UsageError", "ConfigError", "InputError", "StrictError", "QualityError", "LockTimeout",
       "TargetError", "ConnectError", "PipelineError"]


def test_every_exception_is_exported_with_exit_code_and_retryable():
    for name in ALL:
        cls = getattr(hiwater, name)
        assert issubclass(cls, hiwater.HiwaterError) and name in hiwater.__all__
        assert cls.exit_code in (1, 2) and isinstance(cls.retryable, bool)
    assert hiwater.LockTimeout.retryable and hiwater.ConnectError.retryable
    assert not hiwater.UsageError.retryable and not hiwater.QualityError.retryable
    assert hiwater.UsageError.exit_code == hiwater.ConfigError.exit_code == 2


@pytest.mark.parametrize("err", [
    E.HiwaterError("boom", hint="do this"),
    E.UsageError("--lookback 'x': not a duration", hint="use 15m"),
    E.InputError("malformed JSON", path="a.jsonl", line=3, column=7),
    E.StrictError("cursor is missing", path="a.jsonl", row=2, key=5),
    E.QualityError("3 of 4 rejected", rejected=3, source_records=4, limit="1"),
    E.LockTimeout("stream 'x' is being loaded by another run", hint="wait"),
    E.ConnectError("postgresql://u:***@h/db: cannot connect: refused"),
    E.TargetError("lost the lock", retryable=True),
])
def test_exceptions_pickle_with_their_context(err):
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is type(err) and str(back) == str(err) and back.__dict__ == err.__dict__
    assert back.exit_code == err.exit_code and back.retryable == err.retryable


def test_a_refused_connection_is_retryable_and_a_bad_option_is_not(tmp_path):
    with pytest.raises(hiwater.ConnectError) as e:
        hiwater.load(str(SAMPLE), target="postgresql://nobody@127.0.0.1:1/db?connect_timeout=2")
    assert e.value.retryable and e.value.exit_code == 1
    with pytest.raises(hiwater.UsageError) as e:
        hiwater.load(str(SAMPLE), db=str(tmp_path / "t.db"), lookback="soon")
    assert not e.value.retryable and e.value.exit_code == 2


def test_an_unknown_keyword_says_did_you_mean():
    with pytest.raises(hiwater.UsageError, match="did you mean lookback"):
        hiwater.load(str(SAMPLE), lokback="15m")
