"""hiwater from an orchestrator: plain functions over the Python API.

Each function is what an Airflow task or a Dagster asset calls; the decorators are in the
comments so this file imports without Airflow or Dagster (the test suite calls these very
functions: tests/test_pipeline.py). Warnings and events go to the ``logging`` logger
``hiwater``, which both orchestrators show in the task's log.
"""

from __future__ import annotations

import hiwater


# Airflow (2.x TaskFlow):
#
#     from airflow.decorators import task
#     load_streams = task(retries=3)(load_streams)     # or decorate the def with @task(retries=3)
#
def load_streams(streams=None, project=None, jobs: int = 4) -> dict:
    """Run the project's streams; fail the task if any failed (the others have committed).

    The return value (the per-stream summaries and the total) goes to XCom. A failure whose
    every cause is retryable (a database that did not answer, a lock held by another run)
    is worth Airflow's retries; the others (bad data past --max-rejected, a bad option) are not.
    """
    try:
        result = hiwater.run(streams, project=project, jobs=jobs)
    except hiwater.PipelineError as exc:
        if not exc.retryable:
            try:
                from airflow.exceptions import AirflowFailException  # no retry: it would fail the same way
            except ImportError:
                raise exc from None
            raise AirflowFailException(str(exc)) from exc
        raise
    return result.to_dict()


# Dagster:
#
#     from dagster import asset, MaterializeResult
#     @asset
#     def hiwater_streams_asset():
#         return MaterializeResult(metadata=hiwater_streams())
#
def hiwater_streams(project=None) -> dict:
    """Run every stream and return the numbers an asset's metadata shows."""
    total = hiwater.run(project=project).total()
    return {k: total[k] for k in ("streams", "loaded", "skipped", "rejected", "duration_s")}


def freshness_gate(project=None, warn_after=None, error_after="6h", by: str = "load") -> dict:
    """A sensor or a check step: each stream's verdict; raises when any is past ``error_after``."""
    verdicts = hiwater.check(project=project, warn_after=warn_after, error_after=error_after, by=by)
    late = [v["stream"] for v in verdicts if v["verdict"] == "error"]
    if late:
        raise hiwater.HiwaterError(f"stream(s) past --error-after {error_after}: {', '.join(late)}")
    return {v["stream"]: v["verdict"] for v in verdicts}
