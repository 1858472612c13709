"""``/metrics``: every stream's status in the Prometheus text exposition format (version 0.0.4).

One sample per stream and metric, labelled ``stream`` and ``target`` (the target as the CLI
shows it, password masked); a bucketed stream is one stream here too. A value that does not
exist is left out (an integer cursor has no data age); a stream that never loaded has a load
age of ``+Inf``, as ``hiwater check`` judges it infinitely old. A target that did not answer
shows as ``hiwater_target_up 0`` and its streams are missing, so an alert on either fires.
"""

from __future__ import annotations

from ..freshness import parse_instant

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# name, type, help, how to get the value from a stream's row (None: no sample)
METRICS = [
    ("hiwater_watermark_timestamp_seconds", "gauge",
     "The watermark of a timestamp or date cursor, as Unix time.", "_watermark_time"),
    ("hiwater_watermark_value", "gauge", "The watermark of an integer cursor.", "_watermark_int"),
    ("hiwater_data_age_seconds", "gauge", "Now minus the watermark (timestamp and date cursors).", "data_age_s"),
    ("hiwater_load_age_seconds", "gauge",
     "Seconds since the latest successful run finished (+Inf: never loaded).", "_load_age"),
    ("hiwater_last_run_failed", "gauge", "1 when the latest run failed, else 0 (absent: never run).", "_failed"),
    ("hiwater_last_run_timestamp_seconds", "gauge", "When the latest run finished, as Unix time.", "_last_run_at"),
    ("hiwater_last_run_source_records", "gauge", "Records the latest run read.", "last_source_records"),
    ("hiwater_last_run_rows_loaded", "gauge", "Rows the latest run inserted or updated.", "last_loaded"),
    ("hiwater_last_run_rows_rejected", "gauge", "Records the latest run rejected as invalid.", "last_rejected"),
    ("hiwater_last_run_duration_seconds", "gauge", "How long the latest run took.", "last_duration_s"),
    ("hiwater_quarantine_records", "gauge", "Records in the quarantine.", "quarantined"),
    ("hiwater_verify_age_seconds", "gauge",
     "Seconds since the latest `hiwater verify` of the stream (+Inf: never verified).", "_verify_age"),
    ("hiwater_verify_ok", "gauge",
     "1 when the latest verify found the target equal (or repaired it), 0 when it differed or never ran.",
     "_verify_ok"),
]


def escape_label(value) -> str:
    """A label value as the format wants it: backslash, double quote and newline escaped."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(v) -> str:
    if v == float("inf"):
        return "+Inf"
    if isinstance(v, int) or (isinstance(v, float) and v.is_integer() and abs(v) < 1e15):
        return str(int(v))
    return repr(float(v))


def _value(row: dict, how: str, now: float):
    if how == "_watermark_time":
        return None if row.get("data_age_s") is None else round(now - row["data_age_s"], 3)
    if how == "_watermark_int":
        return int(row["watermark"]) if row.get("kind") == "int" and row.get("watermark") is not None else None
    if how == "_load_age":
        return float("inf") if row.get("load_age_s") is None else row["load_age_s"]
    if how == "_failed":
        outcome = row.get("last_outcome")
        return None if outcome in (None, "never run") else int(outcome == "failed")
    if how == "_verify_age":
        return float("inf") if row.get("verify_age_s") is None else row["verify_age_s"]
    if how == "_verify_ok":
        v = row.get("verify")
        return int(bool(v) and (v.get("outcome") != "differs" or bool(v.get("repaired"))))
    if how == "_last_run_at":
        at = row.get("last_run_at")
        return None if at is None else parse_instant(at) / 1_000_000
    return row.get(how)


def render(snapshot) -> str:
    """The exposition text for a :class:`~hiwater.ui.view.Snapshot`."""
    streams = snapshot.streams()
    lines = []
    for name, kind, text, how in METRICS:
        lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
        for r in streams:
            v = _value(r, how, snapshot.now)
            if v is not None:
                lines.append(f'{name}{{stream="{escape_label(r["stream"])}",target="{escape_label(r["target"])}"}} '
                             f"{_number(v)}")
    lines += ["# HELP hiwater_last_run_outcome The latest run's outcome (committed, failed, never run), as a label.",
              "# TYPE hiwater_last_run_outcome gauge"]
    for r in streams:
        lines.append(f'hiwater_last_run_outcome{{stream="{escape_label(r["stream"])}",'
                     f'target="{escape_label(r["target"])}",outcome="{escape_label(r["last_outcome"])}"}} 1')
    lines += ["# HELP hiwater_target_up 1 when the target answered this scrape, else 0.",
              "# TYPE hiwater_target_up gauge"]
    for t in sorted({r["target"] for r in snapshot.rows}):
        lines.append(f'hiwater_target_up{{target="{escape_label(t)}"}} 1')
    for e in snapshot.errors:
        lines.append(f'hiwater_target_up{{target="{escape_label(e["target"])}"}} 0')
    return "\n".join(lines) + "\n"
