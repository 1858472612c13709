"""gs:// and az:// (abfs://) go through fsspec like s3:// (SPEC §10), as the optional extras
``hiwater[gcs]`` and ``hiwater[azure]``. Nothing here contacts Google or Azure: a missing extra is
refused before any connection, and the routing is checked on fsspec's side without listing."""

from __future__ import annotations

import sys
import types

import pytest

from hiwater.cli import main
from hiwater.sources import files as F

CASES = [("gs://landing/events/", "gcsfs", "gcs"), ("gcs://landing/events/*.jsonl", "gcsfs", "gcs"),
         ("az://landing/events/", "adlfs", "azure"), ("abfs://landing/events/", "adlfs", "azure"),
         ("s3://landing/events/", "s3fs", "s3")]


@pytest.mark.parametrize("url,package,extra", CASES)
def test_a_missing_extra_is_one_line_naming_it_exit_2(url, package, extra, monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, package, None)  # the import fails, as when it is not installed
    assert main(["load", "--input", url, "--db", str(tmp_path / "t.db"), "--table", "t"]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and f"pip install 'hiwater[{extra}]'" in err[0] and package in err[0], err
    assert not (tmp_path / "t.db").exists()


@pytest.mark.parametrize("url,package,extra", CASES[:4])
def test_the_url_is_routed_to_fsspec_with_its_scheme(url, package, extra, monkeypatch):
    """With the package importable, the listing goes to ``fsspec.filesystem(scheme)`` (here a
    recording stand-in for the filesystem: a real one would reach the cloud), and each object is
    keyed by its URL and its ETag."""
    import fsspec
    if package not in sys.modules:
        try:
            __import__(package)
        except ImportError:
            monkeypatch.setitem(sys.modules, package, types.ModuleType(package))
    asked = []

    class Listing:
        def find(self, path, detail):
            asked.append(("find", path))
            return {"landing/events/a.jsonl": {"type": "file", "size": 3, "etag": '"e1"'}}

        def glob(self, path, detail):
            asked.append(("glob", path))
            return {"landing/events/a.jsonl": {"type": "file", "size": 3, "md5Hash": "m1"}}

    def filesystem(scheme, **kw):
        asked.append(("filesystem", scheme))
        return Listing()
    monkeypatch.setattr(fsspec, "filesystem", filesystem)
    src = F.FileSource(url)
    scheme = url.split("://")[0]
    assert asked[0] == ("filesystem", scheme) and asked[1][0] == ("glob" if "*" in url else "find")
    assert src.tracked and list(src.entries) == [f"{scheme}://landing/events/a.jsonl"]
    assert src.entries[f"{scheme}://landing/events/a.jsonl"].etag in ("e1", "m1")


@pytest.mark.parametrize("scheme,package", [("gs", "gcsfs"), ("az", "adlfs"), ("abfs", "adlfs")])
def test_fsspec_serves_the_scheme_with_the_extras_package(scheme, package):
    pytest.importorskip(package)  # the gcs / azure extras are not in the test extra (see docs/files.md)
    import fsspec
    assert fsspec.get_filesystem_class(scheme).__module__.split(".")[0] == package
