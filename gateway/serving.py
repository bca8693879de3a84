"""Serving the app in a process: listen, say where and with what, stop cleanly on Ctrl-C or SIGTERM.

What `web.run_app` left to chance, done on purpose here:
- one line when the service listens: its URL and what is configured (database, model endpoint, admin API,
  workers), never a secret;
- a port already taken is one clear line and exit status 1, not a traceback;
- a signal while starting up waits for the start-up step in progress (a migration, opening a connection) and
  then closes everything that was opened, so no database thread is left behind keeping the process alive; a
  second signal stops at once;
- requests the HTTP parser refuses (a header over 8 KB, a malformed request line) are answered in the contract's
  error envelope, and neither the answer nor the log repeats what was sent: an oversized header is usually an
  Authorization header, and its value is a credential.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
import sys
from typing import TextIO
from urllib.parse import urlsplit, urlunsplit

import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from api.errors import ApiError
from gateway.settings import Settings

log = structlog.get_logger("gateway.serving")

# The HTTP parser's bounds (aiohttp's defaults, named here): a request line or header field over this many bytes
# is refused with 400 before any route runs.
MAX_FIELD_BYTES = 8190


def serve(app: web.Application, settings: Settings, err: TextIO = sys.stderr) -> int:
    """Run until SIGINT or SIGTERM; the process's exit status."""
    return asyncio.run(_serve(app, settings, err))


async def _serve(app: web.Application, settings: Settings, err: TextIO) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    runner = GatewayRunner(app, access_log=None, handle_signals=False)
    starting = asyncio.current_task()
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        stop.set()
        if signals > 1 and starting is not None:
            starting.cancel()  # a second Ctrl-C: stop waiting for the step in progress

    for number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(number, on_signal)
    try:
        # Start-up runs whole even when a signal arrives meanwhile (see the module docstring), then we stop.
        await runner.setup()
        if stop.is_set():
            return 0
        site = web.TCPSite(runner, settings.host, settings.port)
        try:
            await site.start()
        except OSError as exc:
            print(f"error: cannot listen on {settings.host}:{settings.port}: {_why(exc)}", file=err)
            return 1
        log.info("listening", url=f"http://{_host(settings.host)}:{_port(site, settings.port)}", **describe(settings))
        await stop.wait()
        log.info("stopping", reason="signal")
        return 0
    except asyncio.CancelledError:
        return 130
    finally:
        with contextlib.suppress(asyncio.CancelledError):
            await runner.cleanup()
        for number in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(number)


def describe(settings: Settings) -> dict[str, object]:
    """What an operator wants to see at start-up; secrets only as set or not."""
    return {
        "database": without_credentials(settings.database_url),
        "openai_base_url": without_credentials(settings.openai_base_url),
        "openai_key": "set" if settings.openai_api_key else "not set (the relay answers 503 not_configured)",
        "admin_api": "enabled" if settings.admin_jwt_secret else "disabled (set ADMIN_JWT_SECRET)",
        "secrets_key": "set" if settings.secrets_key else "not set (channels cannot be connected)",
        "role": settings.role,
        "workers": 0 if settings.role == "web" else settings.workers,
        **({"cpu_priority": f"nice {os.nice(0)}"} if settings.role == "worker" else {}),
    }


def without_credentials(url: str) -> str:
    """The URL with any user and password replaced (postgresql://user:password@host/db -> postgresql://***@host/db)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc and "password=" not in parts.query:
        return url  # nothing to hide (and sqlite:///path keeps its three slashes)
    if "password=" in parts.query:  # libpq also takes the password as a query parameter
        query = "&".join("password=***" if p.startswith("password=") else p for p in parts.query.split("&"))
        parts = parts._replace(query=query)
    if "@" in parts.netloc:
        parts = parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1])
    return urlunsplit(parts)


def _why(exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return "the address is already in use (another gateway running? choose another PORT)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return "no network interface has this address (check HOST)"
    if exc.errno == errno.EACCES:
        return "permission denied (ports below 1024 need privileges; choose another PORT)"
    return exc.strerror or str(exc)


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _port(site: web.TCPSite, configured: int) -> int:
    server = site._server  # the bound socket tells the real port when PORT=0
    sockets = getattr(server, "sockets", None) or ()
    return int(sockets[0].getsockname()[1]) if sockets else configured


class _EnvelopeRequestHandler(RequestHandler):
    """aiohttp's per-connection protocol, answering what its parser refuses in the error envelope."""

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if not 400 <= status < 500:
            return super().handle_error(request, status, exc, message)
        # The parser's own message quotes the offending bytes: a token, for an oversized Authorization header.
        log.warning("http_request_refused", status=status, reason=type(exc).__name__ if exc else None)
        refused = ApiError(
            status,
            "bad_request" if status == 400 else "http_error",
            f"the request could not be read: a malformed request line or header, or one longer than "
            f"{MAX_FIELD_BYTES} bytes",
        ).response()
        refused.force_close()
        return refused


class _EnvelopeServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _EnvelopeRequestHandler(self, loop=self._loop, **self._kwargs)


class GatewayRunner(web.AppRunner):
    """The app's runner, with the request handler above for every connection."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # The same server, state and all; only the class that builds each connection's handler is ours.
        server.__class__ = _EnvelopeServer
        return server
