"""Fakes of the outside world listen here: an aiohttp app on a free port of 127.0.0.1."""

from __future__ import annotations

import socket

from aiohttp import web


async def serve(app: web.Application) -> tuple[web.AppRunner, int]:
    """Start ``app`` on a free loopback port; returns its runner (clean it up) and the port."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, runner.addresses[0][1]


def free_port() -> int:
    """A loopback port free right now, for a server in another process to listen on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
