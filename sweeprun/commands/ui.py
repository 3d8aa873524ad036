"""``sweeprun ui``: the repository's experiments as a page that follows the runs.

A small HTTP server on 127.0.0.1 (another host only when given, with a warning): the page
(``report.uipage``), its state as JSON, and a stream of server-sent events that says
"changed" when a ref under ``refs/sweeprun`` moves or a running experiment logs; the page
then fetches the state again. The server reads only: no request changes the repository.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
import webbrowser
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from sweeprun._core.exitcode import ExitCode
from sweeprun.commands import uistate
from sweeprun.commands.plots import javascript_bundle
from sweeprun.exceptions import UsageError
from sweeprun.hookspec import hookimpl
from sweeprun.report.uipage import script_json, ui_page

if TYPE_CHECKING:
    from sweeprun._core.config import Config
    from sweeprun._core.registry import CommandRegistry

#: How often the event stream looks for a change (a few ``stat`` calls each time).
POLL = 0.5
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class UiServer(ThreadingHTTPServer):
    """The server: the page, the state (cached per stamp), events, curves, importance."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], config: Config, page: bytes) -> None:
        super().__init__(address, Handler)
        self.config = config
        self.page = page
        self._lock = threading.Lock()
        self._cached: tuple[str, bytes] = ("", b"")
        self.stopping = threading.Event()

    def state(self) -> bytes:
        """The state as JSON, rebuilt only when the stamp moved."""
        now = uistate.stamp(self.config.repo)
        with self._lock:
            if self._cached[0] != now:
                self._cached = (now, script_json(uistate.state(self.config)).encode())
            return self._cached[1]


class Handler(BaseHTTPRequestHandler):
    """GET only; every answer is read from the repository as it is."""

    server: UiServer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the terminal shows the URL, not every request."""

    def _send(self, body: bytes, kind: str, status: int = HTTPStatus.OK) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, data: Any) -> None:
        self._send(script_json(data).encode(), "application/json")

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        try:
            if url.path == "/":
                self._send(self.server.page, "text/html; charset=utf-8")
            elif url.path == "/favicon.ico":
                self._send(b"", "image/x-icon", HTTPStatus.NO_CONTENT)
            elif url.path == "/api/state":
                self._send(self.server.state(), "application/json")
            elif url.path == "/api/events":
                self._events()
            elif url.path == "/api/curves":
                self._json(uistate.curves(self.server.config, query.get("key", [])))
            elif url.path == "/api/importance":
                metric = (query.get("metric") or [""])[0]
                baseline = (query.get("baseline") or ["*"])[0]
                self._json(uistate.importance(self.server.config, metric, baseline))
            else:
                self._send(b"not found\n", "text/plain", HTTPStatus.NOT_FOUND)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the page went away

    def _events(self) -> None:
        """Server-sent events: ``changed`` whenever the stamp moves (and a comment every
        15 s, so that a closed page ends this thread)."""
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        repo = self.server.config.repo
        last = uistate.stamp(repo)
        quiet = time.monotonic()
        while not self.server.stopping.wait(POLL):
            now = uistate.stamp(repo)
            if now != last:
                last = now
                self.wfile.write(f"event: changed\ndata: {now}\n\n".encode())
                self.wfile.flush()
            elif time.monotonic() - quiet > 15:
                self.wfile.write(b": still here\n\n")
                self.wfile.flush()
            else:
                continue
            quiet = time.monotonic()


def _ui(config: Config) -> int:
    host, port = config.getoption("host"), int(config.getoption("port"))
    if not 0 <= port <= 65535:
        raise UsageError(f"--port {port}: not a port (valid: 0 to 65535; 0: any free one)")
    page = ui_page(f"sweeprun — {config.repo.root.name}", javascript_bundle(config)).encode()
    try:
        server = UiServer((host, port), config, page)
    except OSError as exc:
        raise UsageError(
            f"--host {host} --port {port}: cannot listen there ({exc.strerror})"
        ) from None
    if host not in LOOPBACK:
        print(
            f"sweeprun ui: warning: listening on {host}: anyone who can reach this machine "
            "can read these results",
            file=sys.stderr,
        )
    shown = str(server.server_address[0])
    where = f"[{shown}]" if ":" in shown else shown
    url = f"http://{where}:{server.server_address[1]!s}/"
    config.stdout.write(f"sweeprun ui: {url} (read-only; Ctrl+C ends it)\n")
    config.stdout.flush()
    server.state()  # warm: the first paint does not wait for the index
    if config.getoption("open"):
        webbrowser.open(url)
    try:
        server.serve_forever(poll_interval=POLL)
    except KeyboardInterrupt:
        config.stdout.write("sweeprun ui: stopped\n")
    finally:
        server.stopping.set()
        server.server_close()
    return ExitCode.OK


def _ui_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: any free)")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only)",
    )
    p.add_argument("--open", action="store_true", help="open the page in a browser")


@hookimpl
def sweeprun_add_commands(commands: CommandRegistry) -> None:
    commands.add(
        "ui",
        "a live page of the experiments: table, parallel coordinates, curves (read-only)",
        _ui_args,
        _ui,
        examples=(
            "sweeprun ui                       # http://127.0.0.1:8765/",
            "sweeprun ui --port 0 --open       # any free port, in your browser",
        ),
    )
