"""Every source declares the optional abilities the loader uses, with the default that means
"not this source" (sources/base.py); any object with batches()/close() gets the same defaults."""

from __future__ import annotations

import json
import sqlite3

import pytest

from hiwater.sources.base import Source, as_source
from hiwater.sources.files import open_files
from hiwater.sources.memory import DataSource
from hiwater.sources.quarantine import QuarantineSource
from hiwater.sources.spill import Spilled
from hiwater.sources.sql import SqlSource

DEFAULTS = {"rereadable": True, "url": None, "spill_for_window": False, "tracked": False, "replay": False,
            "light_key": None}


@pytest.fixture
def sources(tmp_path):
    line = json.dumps({"id": 1, "modified_at": "2025-01-15T00:00:00Z"}) + "\n"
    (tmp_path / "a.jsonl").write_text(line)
    (tmp_path / "land").mkdir()
    (tmp_path / "land" / "b.jsonl").write_text(line)
    sqlite3.connect(tmp_path / "s.db").execute("CREATE TABLE t (id INTEGER, modified_at TEXT)").connection.close()
    made = {"file": open_files(str(tmp_path / "a.jsonl")), "folder": open_files(str(tmp_path / "land")),
            "list": DataSource([{"id": 1}]), "iterator": DataSource(iter([{"id": 1}])),
            "quarantine": QuarantineSource([]), "sql": SqlSource(f"sqlite:///{tmp_path / 's.db'}", table="t"),
            "spilled": Spilled(open_files(str(tmp_path / "land")))}
    yield made
    for s in made.values():
        s.close()


def test_each_source_has_the_abilities_it_overrides_and_the_defaults_elsewhere(sources):
    own = {"file": {"spill_for_window": True}, "folder": {"spill_for_window": True, "tracked": True},
           "iterator": {"rereadable": False}, "quarantine": {"replay": True},
           "sql": {"url": sources["sql"].url}, "spilled": {"spill_for_window": True, "tracked": True}}
    for name, src in sources.items():
        assert isinstance(src, Source)
        got = {a: getattr(src, a) for a in DEFAULTS}
        assert got == {**DEFAULTS, **own.get(name, {})}, name
    assert sources["sql"].url.startswith("sqlite:///")
    assert [n for n, s in sources.items() if s.expected_records() is not None] == ["file", "folder", "spilled"]
    assert [n for n, s in sources.items() if type(s).set_window is not Source.set_window] == ["sql", "spilled"]
    assert type(sources["spilled"].source).set_window is Source.set_window  # it forwards a file source's default
    with pytest.raises(NotImplementedError):
        sources["list"].select({})  # only a tracked source is narrowed by the manifest
    assert sources["folder"].select({}).to_dict() == {"listed": 1, "read": 1, "skipped": 0, "vanished": 0}


def test_any_object_with_batches_and_close_gets_the_declared_defaults():
    class Plain:
        description = "plain"
        url = "postgresql://u:pw@h/db"

        def batches(self):
            yield from ()

        def close(self):
            pass

    src = as_source(Plain())
    assert {a: getattr(src, a) for a in DEFAULTS} == {**DEFAULTS, "url": "postgresql://u:pw@h/db"}
    assert src.description == "plain" and list(src.batches()) == [] and src.expected_records() is None
    src.set_window(1, True, None, "int")  # no pushdown: nothing happens
    src.light_key = ("id",)  # the loader sets it; an object without one never sees it
    assert not hasattr(src._adapted, "light_key") and src.light_key == ("id",)
    already = DataSource([{"id": 1}])
    assert as_source(already) is already
