"""The file manifest (SPEC §10) on every target: the files a run applied commit with its data."""

from __future__ import annotations

import os

import pytest

import hiwater
from hiwater.errors import InputError

from test_files_manifest import NOW, make_folder, write_file
from .readback import query


def load(src, url, **kw):
    return hiwater.load(str(src), target=url, table="t", now=NOW, **kw).to_dict()


def files(url):
    if url.startswith("delta"):  # the manifest is folded from the log's committed chain
        from hiwater.targets import open_target
        with open_target(target=url) as t:
            return {os.path.basename(p): (size, run) for p, (size, _m, _e, run) in t.ledger.manifest("t").items()}
    return {os.path.basename(p): (int(size), int(run)) for p, size, run in
            query(url, "SELECT path, size, run_id FROM _hiwater_files WHERE stream = ?", ("t",))}


def test_the_manifest_on_every_target(target_url, tmp_path):
    src = make_folder(tmp_path / "land", n=12, per=5)
    first = load(src, target_url)
    assert first["source_records"] == 60 and len(files(target_url)) == 12

    write_file(src / "part-0100.jsonl", range(500, 503), day=28)
    added = load(src, target_url)
    assert added["source_records"] == 3 and added["files"]["skipped"] == 12
    assert files(target_url)["part-0100.jsonl"][1] == added["run_id"]

    write_file(src / "part-0003.jsonl", range(15, 20), day=4, bump=1)  # every record newer, below the watermark
    changed = load(src, target_url, on_late="load")
    assert changed["source_records"] == 5 and changed["updated"] == 5 and changed["files"]["read"] == 1

    os.unlink(src / "part-0005.jsonl")
    gone = load(src, target_url)
    assert gone["files"]["vanished"] == 1 and "part-0005.jsonl" not in files(target_url)
    assert gone["total_in_target"] == 63

    again = load(src, target_url, reread_files=True)
    assert again["source_records"] == 58 and again["loaded"] == 0
    assert {run for _, run in files(target_url).values()} == {again["run_id"]}

    hiwater.stream_drop(stream="t", table=True, target=target_url)
    assert files(target_url) == {}


def test_a_failed_run_and_a_window_run_on_every_target(target_url, tmp_path):
    src = make_folder(tmp_path / "land", n=4, per=5)
    (src / "zz.jsonl").write_text("not json\n")
    with pytest.raises(InputError):
        load(src, target_url)
    assert files(target_url) == {}
    os.unlink(src / "zz.jsonl")
    res = load(src, target_url, window="1d")
    assert len(res["windows"]) == 4 and len(files(target_url)) == 4
    assert load(src, target_url, window="1d")["source_records"] == 0
