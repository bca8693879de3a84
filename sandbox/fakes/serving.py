"""Running a fake server's aiohttp app on a real socket (random port), for benchmarks and subprocess tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from aiohttp import web


@contextlib.asynccontextmanager
async def serve_app(
    app: web.Application, host: str, port: int, *, suffix: str = "", handler_cancellation: bool = False
) -> AsyncIterator[str]:
    """Yield the base URL (`http://host:port` + suffix); port 0 picks a free one."""
    runner = web.AppRunner(app, handler_cancellation=handler_cancellation, access_log=None, shutdown_timeout=5.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        yield f"http://{host}:{runner.addresses[0][1]}{suffix}"
    finally:
        await runner.cleanup()
