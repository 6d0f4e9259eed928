"""The baseline: a bare aiohttp app on the receiver's route that reads the body and answers 200 with a small JSON
body, served like the receiver (``AppRunner``, no access log, one process). ``python -m bench.bare_app PORT``."""

from __future__ import annotations

import asyncio
import sys

from aiohttp import web

from fluxrate.webhook_receiver.app import WEBHOOK_ROUTE


async def webhook(request: web.Request) -> web.Response:
    await request.read()
    return web.json_response({"outcome": "ok"})


async def ready(request: web.Request) -> web.Response:
    return web.json_response({"status": "ready"})


async def serve(port: int) -> None:
    app = web.Application()
    app.router.add_post(WEBHOOK_ROUTE, webhook)
    app.router.add_get("/readyz", ready)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
