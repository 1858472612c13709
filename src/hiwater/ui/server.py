"""``hiwater ui``'s web server: the standard library's threading HTTP server, nothing else.

The safety rules (docs/ui.md, "Security model"), each enforced here on every request:

- It listens on 127.0.0.1 unless given a token; any other address without one is refused
  before anything binds (exit 2).
- With a token, every request must carry it: ``Authorization: Bearer TOKEN``, or the cookie
  set by opening any page once with ``?token=TOKEN`` (HttpOnly, SameSite=Strict; the page
  then redirects to the same address without the token, so it stays out of the history).
- On 127.0.0.1, the ``Host`` header must name this machine: a web page elsewhere cannot reach
  the server through a DNS name that it points at 127.0.0.1 (DNS rebinding).
- Actions (replay) are POST only, off unless ``--allow-actions`` (which needs a token), and
  need an ``Origin`` (or ``Referer``) naming this very server: another site's form cannot post.
- Requests name streams and reasons as values handed to :mod:`hiwater.api`; no SQL comes
  from a request. Pages and JSON mask every password in a URL.
"""

from __future__ import annotations

import hmac
import json
import socket
import sys
from http import HTTPStatus
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import parse_qs, urlencode, urlsplit

from ..errors import HiwaterError, UsageError
from . import metrics, pages
from .view import NotFound, View, mask

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
COOKIE = "hiwater_ui_token"
MIN_TOKEN = 16
REPLAY_COUNTS = ("source_records", "loaded", "rejected")
STATIC = {"ui.css": "text/css; charset=utf-8", "ui.js": "text/javascript; charset=utf-8"}
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def check_settings(host: str, token: str | None, allow_actions: bool) -> None:
    """Refuse an unsafe start (a usage error: exit 2, one line)."""
    if token is not None and len(token) < MIN_TOKEN:
        raise UsageError(f"--token: give at least {MIN_TOKEN} characters",
                         hint="for example: python -c 'import secrets; print(secrets.token_urlsafe())'")
    if host not in LOCAL_HOSTS and token is None:
        raise UsageError(f"--host {host}: listening beyond this machine needs --token (or HIWATER_UI_TOKEN)")
    if allow_actions and token is None:
        raise UsageError("--allow-actions needs --token (or HIWATER_UI_TOKEN): replay changes the target")


class UIServer(ThreadingHTTPServer):
    """The server with what its handlers need: the view, the token and whether actions are on."""

    daemon_threads = True

    def __init__(self, view: View, host: str, port: int, token: str | None, allow_actions: bool):
        check_settings(host, token, allow_actions)
        if ":" in host:
            self.address_family = socket.AF_INET6
        self.view, self.host, self.token, self.allow_actions = view, host, token, allow_actions
        try:
            super().__init__((host, port), Handler)
        except OSError as exc:
            raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}") from None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.server_address[1]}/"


def make_server(*, project=None, db=None, target=None, host: str = "127.0.0.1", port: int = 8765,
                token: str | None = None, allow_actions: bool = False) -> UIServer:
    """The server, bound and ready (``serve_forever()`` runs it); port 0 takes a free port."""
    return UIServer(View(project=project, db=db, target=target), host, port, token, allow_actions)


def serve(*, project=None, db=None, target=None, host: str = "127.0.0.1", port: int = 8765,
          token: str | None = None, allow_actions: bool = False) -> None:
    """``hiwater ui``: serve until interrupted."""
    server = make_server(project=project, db=db, target=target, host=host, port=port, token=token,
                         allow_actions=allow_actions)
    print(f"hiwater ui: serving {server.url}" + (" (open it once with ?token=… to sign in)" if token else "")
          + ("; actions on" if allow_actions else ""), file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("hiwater ui: stopped", file=sys.stderr)
    finally:
        server.server_close()


class Handler(BaseHTTPRequestHandler):
    server: UIServer
    server_version = "hiwater-ui"
    sys_version = ""

    # --- the gate every request passes ------------------------------------------------------
    def _gate(self) -> bool:
        """Whether the request may go on; if not, the refusal has been sent."""
        host = urlsplit("//" + (self.headers.get("Host") or "")).hostname
        if self.server.host in LOCAL_HOSTS and host not in LOCAL_HOSTS:
            self._send_error(HTTPStatus.FORBIDDEN, "this server answers only to 127.0.0.1 or localhost")
            return False
        token = self.server.token
        if token is None:
            return True
        auth = self.headers.get("Authorization") or ""
        cookie = SimpleCookie()
        try:
            cookie.load(self.headers.get("Cookie") or "")
        except Exception:  # noqa: BLE001 - a malformed cookie header is no token
            cookie = SimpleCookie()
        given = [auth[7:] if auth.startswith("Bearer ") else None, cookie[COOKIE].value if COOKIE in cookie else None]
        if any(g is not None and hmac.compare_digest(g.encode(), token.encode()) for g in given):
            return True
        query = self._query()
        if self.command == "GET" and "token" in query and hmac.compare_digest(query["token"].encode(), token.encode()):
            rest = {k: v for k, v in query.items() if k != "token"}
            self._redirect(urlsplit(self.path).path + (f"?{urlencode(rest)}" if rest else ""),
                           cookie=f"{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/")
            return False
        self._send_error(HTTPStatus.UNAUTHORIZED, "give the token: Authorization: Bearer TOKEN, or open ?token=TOKEN once",
                         extra={"WWW-Authenticate": 'Bearer realm="hiwater"'})
        return False

    def _same_origin(self) -> bool:
        origin = self.headers.get("Origin") or self.headers.get("Referer")
        host = self.headers.get("Host")
        return bool(origin and host and urlsplit(origin).netloc == host and urlsplit(origin).scheme == "http")

    # --- methods ----------------------------------------------------------------------------
    def do_GET(self):  # noqa: N802 - the name http.server calls
        if not self._gate():
            return
        path, q = urlsplit(self.path).path, self._query()
        try:
            if path.startswith("/static/"):
                return self._static(path[len("/static/"):])
            view = self.server.view
            if path == "/":
                return self._html(pages.streams_page(view.snapshot()))
            if path == "/stream":
                return self._html(pages.stream_page(view.stream(_required(q, "name"))))
            if path == "/quarantine":
                return self._quarantine(q)
            if path == "/metrics":
                return self._send(HTTPStatus.OK, metrics.CONTENT_TYPE, metrics.render(view.snapshot()).encode())
            if path == "/api/status":
                snap = view.snapshot()
                if snap.errors:
                    return self._json({"error": "a target did not answer", "targets": snap.errors},
                                      HTTPStatus.BAD_GATEWAY)
                names = q.get("stream")
                return self._json([r for r in snap.rows if names is None or r["stream"] == names])
            if path == "/api/history":
                return self._json(view.history(q.get("stream"), _limit(q)))
            if path == "/api/quarantine":
                return self._json(view.quarantine(q.get("stream"), q.get("reason"), _limit(q)))
            raise NotFound(f"no page {path}")
        except Exception as exc:  # noqa: BLE001 - every failure is one answer, never a dropped connection
            self._failure(exc, path)

    def do_POST(self):  # noqa: N802
        if not self._gate():
            return
        path = urlsplit(self.path).path
        if path != "/actions/replay":
            return self._send_error(HTTPStatus.NOT_FOUND, f"no action {path}")
        if not self.server.allow_actions:
            return self._send_error(HTTPStatus.FORBIDDEN, "actions are off: start hiwater ui with --allow-actions")
        if not self._same_origin():
            return self._send_error(HTTPStatus.FORBIDDEN, "cross-origin request refused (Origin must be this server)")
        size = int(self.headers.get("Content-Length") or 0)
        if size > 10_000:
            return self._send_error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "form too large")
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(size).decode("utf-8", "replace")).items()}
        try:
            stream = _required(form, "stream")
            reason = form.get("reason") or None
            done = self.server.view.replay(stream, reason)
            self._redirect("/quarantine?" + urlencode({"replayed": stream, **{k: done[k] for k in REPLAY_COUNTS}}))
        except Exception as exc:  # noqa: BLE001
            self._failure(exc, path)

    def do_PUT(self):  # noqa: N802
        self._send_error(HTTPStatus.METHOD_NOT_ALLOWED, "GET or POST only")

    do_DELETE = do_PATCH = do_PUT

    # --- pages ------------------------------------------------------------------------------
    def _quarantine(self, q: dict):
        view = self.server.view
        stream, reason = q.get("stream") or None, q.get("reason") or None
        rows = view.quarantine(stream, reason, _limit(q) or 1000)
        names = sorted(r["stream"] for r in view.snapshot().streams())
        note = None
        if q.get("replayed") and all(q.get(k, "").isdigit() for k in REPLAY_COUNTS):
            note = (f"Replayed {q['replayed']}: {q['source_records']} record(s), {q['loaded']} loaded, "
                    f"{q['rejected']} rejected again.")
        self._html(pages.quarantine_page(rows, streams=names, stream=stream, reason=reason,
                                         actions=self.server.allow_actions, note=note))

    def _static(self, name: str):
        if name not in STATIC:
            raise NotFound(f"no file {name}")
        data = resources.files("hiwater.ui").joinpath("static", name).read_bytes()
        self._send(HTTPStatus.OK, STATIC[name], data)

    # --- answers ----------------------------------------------------------------------------
    def _failure(self, exc: BaseException, path: str):
        if isinstance(exc, NotFound):
            status = HTTPStatus.NOT_FOUND
        elif isinstance(exc, UsageError):
            status = HTTPStatus.BAD_REQUEST
        elif isinstance(exc, HiwaterError):
            status = HTTPStatus.INTERNAL_SERVER_ERROR
        else:
            status = HTTPStatus.INTERNAL_SERVER_ERROR
            print(f"hiwater ui: internal error on {path}: {type(exc).__name__}: {mask(str(exc))}", file=sys.stderr)
            exc = HiwaterError(f"internal error: {type(exc).__name__} (see the server's log)")
        self._send_error(status, mask(str(exc)), api=path.startswith(("/api/", "/metrics")))

    def _send_error(self, status: HTTPStatus, message: str, *, api: bool | None = None, extra=None):
        if api is None:
            api = urlsplit(self.path).path.startswith(("/api/", "/metrics", "/actions/"))
        if api:
            self._send(status, "application/json", json.dumps({"error": message}).encode(), extra)
        else:
            self._send(status, "text/html; charset=utf-8", pages.error_page(status, message).encode(), extra)

    def _html(self, text: str):
        self._send(HTTPStatus.OK, "text/html; charset=utf-8", text.encode())

    def _json(self, value, status: HTTPStatus = HTTPStatus.OK):
        self._send(status, "application/json", pages.as_json(value))

    def _redirect(self, to: str, cookie: str | None = None):
        extra = {"Location": to}
        if cookie:
            extra["Set-Cookie"] = cookie
        self._send(HTTPStatus.SEE_OTHER, "text/plain; charset=utf-8", b"", extra)

    def _send(self, status, content_type: str, body: bytes, extra=None):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in {**HEADERS, **(extra or {})}.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _query(self) -> dict:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.path).query, keep_blank_values=True).items()}

    def log_message(self, format, *args):  # noqa: A002 - the signature http.server calls
        """One line per request on stderr, without the query string (it may hold the token)."""
        path = urlsplit(self.path).path if hasattr(self, "path") else "-"
        code = args[1] if len(args) > 1 and format.startswith('"%s"') else ""
        sys.stderr.write(f"hiwater ui: {self.address_string()} {self.command} {path} {code}\n")


def _required(q: dict, name: str) -> str:
    value = q.get(name)
    if not value:
        raise UsageError(f"give ?{name}=")
    return value


def _limit(q: dict) -> int | None:
    text = q.get("limit")
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise UsageError(f"limit {text!r}: give a positive whole number")
    return int(text)
