"""The project file, ``hiwater.toml``: many streams, each one ``hiwater.load`` call.

::

    [defaults]                       # applies to every stream; a stream's own keys win
    target = "postgresql://etl@db/warehouse"
    warn-after = "2h"

    [streams.orders]                 # the stream's name: its state name and its table's
    source = "postgresql://app:${APP_PASSWORD}@db/shop"
    source-table = "orders"
    cursor = "updated_at"

Keys are the ``hiwater load`` options' long names without the dashes (``source-table``;
``source_table`` is the same key), plus ``warn-after`` / ``error-after`` (for ``hiwater
check``). Reading the file is pure: it parses, checks each value's TOML type (``TYPES``), expands
``${VAR}``, resolves paths and URLs against the file's folder, checks every stream's options and
that no two streams share one state; it opens no database and reads no input.
"""

from __future__ import annotations

import datetime as dt
import difflib
import os
import re
import sys
from dataclasses import dataclass, field

from .durations import Duration, parse_duration
from .errors import ConfigError, UsageError
from .options import LoadOptions
from .urls import expand, file_path, redact

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

FILE_NAME = "hiwater.toml"
ENV_VAR = "HIWATER_PROJECT"

# Project key -> keyword of hiwater.load. The load options come from LoadOptions; the rest
# name the source and the target.
_SOURCE_KEYS = {"input": "input", "source": "source_url", "source-table": "source_table", "query": "query",
                "target": "target", "db": "db"}
_NOT_IN_FILE = {"dry_run", "now"}  # per invocation (`hiwater run --dry-run`), not per stream
_LOAD_KEYS = {name.replace("_", "-"): name for name in LoadOptions.__dataclass_fields__
              if name not in _NOT_IN_FILE}
_CHECK_KEYS = {"warn-after": "warn_after", "error-after": "error_after", "verify": "verify"}
KEYS = {**_SOURCE_KEYS, **_LOAD_KEYS, **_CHECK_KEYS}
_TOP = ("defaults", "streams")

# What TOML may give each key. The values themselves (a known --format, a duration that parses)
# are LoadOptions' to check; this table only keeps a list or a number from reaching code that
# wants text (which would end in an internal TypeError).
_KINDS = {
    "a string": lambda v: isinstance(v, str),
    "a list of strings": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
    "a whole number": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "true or false": lambda v: isinstance(v, bool),
    "a date-time": lambda v: isinstance(v, dt.date),  # TOML's dates and date-times (since/until)
}
_TEXT, _FLAG, _NUMBER = ("a string",), ("true or false",), ("a whole number",)
_DURATION = ("a string", "a whole number")  # "15m", or a bare number for an integer cursor
_BOUND = ("a string", "a whole number", "a date-time")
TYPES = {
    "input": _TEXT, "source": _TEXT, "source-table": _TEXT, "query": _TEXT, "target": _TEXT, "db": _TEXT,
    "key": ("a string", "a list of strings"), "cursor": _TEXT, "table": _TEXT, "stream": _TEXT,
    "format": _TEXT, "boundary": _TEXT, "on-late": _TEXT, "assume-tz": _TEXT, "delete-field": _TEXT,
    "executor": _TEXT, "csv-delimiter": _TEXT, "csv-quote": _TEXT, "encoding": _TEXT,
    "full-load": _FLAG, "reread-files": _FLAG, "prune": _FLAG, "strict": _FLAG, "soft-delete": _FLAG,
    "rebucket": _FLAG, "forget-quarantine": _FLAG,
    "lookback": _DURATION, "window": _DURATION, "settle": _DURATION, "max-future": _DURATION,
    "lock-timeout": _DURATION, "warn-after": _DURATION, "error-after": _DURATION,
    "since": _BOUND, "until": _BOUND, "start": _BOUND,
    "batch-size": _NUMBER, "buckets": _NUMBER, "max-rejected": ("a whole number", "a string"),
    "verify": _TEXT,  # `hiwater verify` defaults for the stream: "--by 1d --content"
}


@dataclass
class StreamConfig:
    """One stream of a project: the keyword arguments of its ``hiwater.load`` call."""

    name: str
    load: dict                                   # hiwater.load(**load)
    warn_after: Duration | None = None
    error_after: Duration | None = None
    options: LoadOptions | None = None          # the checked options (LoadOptions.build)
    verify: str | None = None                   # `hiwater verify` defaults ("--by 1d --content")

    @property
    def target_kw(self) -> dict:
        return {"db": self.load.get("db"), "target": self.load.get("target")}

    def describe(self) -> dict:
        """The stream for people and JSON: sources and targets with passwords masked."""
        out = {"stream": self.name, "table": self.load.get("table")}
        for key in ("input", "source_url", "source_table", "query", "db", "target"):
            v = self.load.get(key)
            if v is not None:
                out[key] = redact(v) if key in ("source_url", "target") else v
        out["warn_after"] = self.warn_after.text if self.warn_after else None
        out["error_after"] = self.error_after.text if self.error_after else None
        return out


@dataclass
class Project:
    path: str
    streams: dict = field(default_factory=dict)  # name -> StreamConfig, in file order

    def select(self, names=None) -> list[StreamConfig]:
        """The named streams (all, in file order, when ``names`` is empty); an unknown name is a
        usage error with a did-you-mean."""
        if not names:
            return list(self.streams.values())
        out = []
        for n in names:
            if n not in self.streams:
                raise UsageError(f"{self.path}: no stream named {n!r}" + _did_you_mean(n, self.streams),
                                 hint=f"the streams: {', '.join(self.streams) or '(none)'}")
            if self.streams[n] not in out:
                out.append(self.streams[n])
        return out


def find(project: str | os.PathLike | None = None) -> str:
    """The project file: ``project``, else ``$HIWATER_PROJECT``, else ``./hiwater.toml``."""
    if project is not None:
        path = os.fspath(project)
        how = "--project"
    elif os.environ.get(ENV_VAR):
        path, how = os.environ[ENV_VAR], f"${ENV_VAR}"
    else:
        path, how = FILE_NAME, None
    if os.path.isdir(path):
        path = os.path.join(path, FILE_NAME)
    if not os.path.isfile(path):
        if how is None:
            raise UsageError(f"no {FILE_NAME} in {os.getcwd()}",
                             hint=f"run in the project's folder, or give --project FILE (or set {ENV_VAR})")
        raise UsageError(f"{how} {path}: no such file")
    return path


def load_project(project: str | os.PathLike | None = None, *, environ=None) -> Project:
    """Read, expand and check a project file (see the module's doc)."""
    path = find(project)
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror}") from None
    return parse(doc, path, environ=os.environ if environ is None else environ)


def parse(doc: dict, path: str, *, environ) -> Project:
    for key in doc:
        if key not in _TOP:
            raise UsageError(f"{path}: unknown table [{key}]" + _did_you_mean(key, _TOP),
                             hint="a project has [defaults] and [streams.NAME] tables")
    defaults = doc.get("defaults", {})
    if not isinstance(defaults, dict):
        raise UsageError(f"{path}: defaults must be a table ([defaults])")
    streams = doc.get("streams", {})
    if not isinstance(streams, dict) or not all(isinstance(v, dict) for v in streams.values()):
        raise UsageError(f"{path}: each stream must be a table ([streams.NAME])")
    if not streams:
        raise UsageError(f"{path}: no streams", hint="add a [streams.NAME] table with input = … or source = …")
    base_dir = os.path.dirname(os.path.abspath(path))
    where_defaults = f"{path} [defaults]"
    common = _keys(defaults, where_defaults, environ)
    project = Project(path)
    for name, table in streams.items():
        where = f"{path} [streams.{_toml_key(name)}]"
        own = _keys(table, where, environ)
        merged = {**common, **own}
        project.streams[name] = _stream(name, merged, where, base_dir)
    _one_state_each(project)
    return project


def _one_state_each(project: Project) -> None:
    """Two streams that keep their state under one name in one target would share a watermark
    (and a lock, a history, a manifest): the second run would skip what the first had passed, or
    fail on the other's table. Refused here, so ``validate`` says it before ``run`` meets it."""
    owner: dict = {}
    for name, cfg in project.streams.items():
        place = (cfg.load.get("db"), cfg.load.get("target"), cfg.load["stream"])
        if place in owner:
            raise UsageError(f"{project.path}: [streams.{_toml_key(owner[place])}] and [streams.{_toml_key(name)}] "
                             f"both keep their state as stream {cfg.load['stream']!r} in one target",
                             hint="give each its own stream = \"…\", or its own target")
        owner[place] = name


def _keys(table: dict, where: str, environ) -> dict:
    """A table's keys as ``{python_name: value}``: known keys only, ``${VAR}`` expanded."""
    out: dict = {}
    spelled: dict = {}
    for raw, value in table.items():
        key = raw.replace("_", "-")
        if key not in KEYS:
            raise UsageError(f"{where}: unknown key {raw!r}" + _did_you_mean(key, KEYS),
                             hint="keys are the `hiwater load` options without the dashes, and "
                                  "warn-after / error-after")
        if key in spelled:
            raise UsageError(f"{where}: {spelled[key]!r} and {raw!r} are the same key; give one")
        spelled[key] = raw
        kinds = TYPES[key]
        if not any(_KINDS[kind](value) for kind in kinds):
            either = " or ".join([", ".join(kinds[:-1]), kinds[-1]] if len(kinds) > 1 else kinds)
            raise ConfigError(f"{where}: {raw} must be {either}, not {value!r}")
        if isinstance(value, str):
            value = expand(value, f"{where} {raw}", environ=environ, dollars=True)
        elif isinstance(value, list):
            value = [expand(v, f"{where} {raw}", environ=environ, dollars=True) for v in value]
        out[KEYS[key]] = value
    return out


def _stream(name: str, kw: dict, where: str, base_dir: str) -> StreamConfig:
    verify = kw.pop("verify", None)
    warn = kw.pop("warn_after", None)
    error = kw.pop("error_after", None)
    check = {}
    for key, v in (("warn-after", warn), ("error-after", error)):
        if v is None:
            check[key] = None
            continue
        try:
            d = parse_duration(v, key)
        except UsageError as exc:
            raise UsageError(f"{where}: {exc.message}", hint=exc.hint) from None
        if d.micros is None:
            raise UsageError(f"{where}: {key} {d.text!r}: give a unit", hint="for example 30m, 6h or 1d")
        check[key] = d
    if check["warn-after"] and check["error-after"] and check["warn-after"].micros > check["error-after"].micros:
        raise UsageError(f"{where}: warn-after {check['warn-after'].text} is later than error-after "
                         f"{check['error-after'].text}")
    if "input" in kw and "source_url" in kw:
        raise UsageError(f"{where}: give input or source, not both")
    if "input" not in kw and "source_url" not in kw:
        raise UsageError(f"{where}: no input and no source", hint="give input = \"PATH\" or source = \"URL\"")
    if "source_url" in kw and ("source_table" in kw) == ("query" in kw):
        raise UsageError(f"{where}: a source needs exactly one of source-table or query")
    if "input" in kw and ("source_table" in kw or "query" in kw):
        raise UsageError(f"{where}: source-table and query read a database: give source, not input")
    if "db" in kw and "target" in kw:
        raise UsageError(f"{where}: give db or target, not both")
    if "db" not in kw and "target" not in kw and not os.environ.get("HIWATER_TARGET_URL"):
        raise UsageError(f"{where}: no target: a project's streams are kept somewhere",
                         hint="give target = \"URL\" or db = \"PATH\" (in [defaults] or the stream)")
    if kw.get("input") == "-":
        raise UsageError(f"{where}: input = \"-\" (standard input) cannot be one of many streams")
    # Paths are relative to the project file's folder, whatever the working directory (cron).
    if "input" in kw:
        kw["input"] = _resolve(kw["input"], base_dir)
    if "db" in kw:
        kw["db"] = _resolve(kw["db"], base_dir)
    for key in ("target", "source_url"):
        if key in kw:
            kw[key] = _resolve_url(kw[key], base_dir)
    kw.setdefault("table", name)
    kw.setdefault("stream", name)
    load = dict(kw)
    opts_kw = {k: v for k, v in kw.items() if k in LoadOptions.__dataclass_fields__}
    try:
        options = LoadOptions.build(**opts_kw)
    except UsageError as exc:
        raise UsageError(f"{where}: {_file_words(exc.message)}", hint=exc.hint) from None
    return StreamConfig(name, load, check["warn-after"], check["error-after"], options, verify)


_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


def _resolve(path: str, base_dir: str) -> str:
    """A path of the file, from the file's folder. A URL (``s3://``, ``gs://``, ``https://``,
    ``file://``…) is not a path in that folder: it stays as written."""
    if _URL.match(path) or os.path.isabs(path):
        return path
    return os.path.normpath(os.path.join(base_dir, path))


def _resolve_url(url: str, base_dir: str) -> str:
    """A target or source URL whose database is a local file (``sqlite:``, ``duckdb:``,
    ``delta:``), with a relative path made the project folder's; any other URL as written."""
    scheme, _, rest = url.partition(":")
    query = url[url.index("?"):] if "?" in url else ""
    kind = scheme.lower()
    if kind in ("sqlite", "duckdb"):  # SQLAlchemy's rule: scheme:///relative, scheme:////absolute
        path = file_path(url)
        return url if path == ":memory:" or os.path.isabs(path) else f"{scheme}:///{_resolve(path, base_dir)}{query}"
    if kind == "delta":  # the Delta target's rule: delta:///absolute, delta://relative, delta:relative
        body = rest.split("?", 1)[0]
        path = body[2:] if body.startswith("//") else body
        return url if not path or os.path.isabs(path) else f"{scheme}://{_resolve(path, base_dir)}{query}"
    return url


def _file_words(message: str) -> str:
    """A LoadOptions message names command-line flags (``--on-late``): in a file they are keys."""
    return re.sub(r"--([a-z][a-z-]*)", r"\1", message)


def _toml_key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else '"' + name.replace('"', '\\"') + '"'


def _did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
