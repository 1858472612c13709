"""``hiwater ui``: a status page, a JSON API and Prometheus metrics, served from the target's own
state, history and quarantine (SPEC §13, docs/ui.md).

- :mod:`~hiwater.ui.view` reads through :mod:`hiwater.api` only (status, history, quarantine,
  state, replay), one call per target, passwords masked;
- :mod:`~hiwater.ui.pages` and :mod:`~hiwater.ui.charts` render HTML and inline SVG;
- :mod:`~hiwater.ui.metrics` writes the Prometheus text format;
- :mod:`~hiwater.ui.server` serves them (standard library only) and enforces the security model.
"""

from .server import make_server, serve

__all__ = ["make_server", "serve"]
