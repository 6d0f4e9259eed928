"""HTTP routes of the receiver (aiohttp)."""

from __future__ import annotations

import time

from aiohttp import web

from fluxrate import WEBHOOK_PATH_PREFIX
from fluxrate.webhook_receiver.processing import Answer, Delivery
from fluxrate.webhook_receiver.receiver import Receiver

RECEIVER = web.AppKey("fluxrate_receiver", Receiver)
WEBHOOK_ROUTE = WEBHOOK_PATH_PREFIX + "/{namespace}/{integration}"


def _json(answer: Answer) -> web.Response:
    return web.json_response(answer.body(), status=answer.status)


async def webhook(request: web.Request) -> web.Response:
    receiver = request.app[RECEIVER]
    received = time.monotonic()
    namespace, integration = request.match_info["namespace"], request.match_info["integration"]
    signature = request.headers.get("Stripe-Signature")
    limit = receiver.settings.max_body_bytes
    try:
        if request.content_length is not None and request.content_length > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
        body = await request.read()  # the app's client_max_size is the limit
    except web.HTTPRequestEntityTooLarge:
        answer = Answer(413, "ignored", f"the body is larger than {limit} bytes")
        receiver.processor.finish(Delivery(namespace, integration, b"", signature, received), answer,
                                  size=request.content_length)
        return _json(answer)
    with receiver.metrics.in_flight.track_inprogress():
        answer = await receiver.processor.handle(Delivery(namespace, integration, body, signature, received))
    return _json(answer)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    receiver = request.app[RECEIVER]
    if receiver.draining:
        return web.json_response({"status": "shutting down"}, status=503)
    if not await receiver.reaches_kubernetes():
        return web.json_response({"status": "the Kubernetes API is not reachable"}, status=503)
    return web.json_response({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    body, content_type = request.app[RECEIVER].metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": content_type})


def build_app(receiver: Receiver) -> web.Application:
    # one byte over the limit so that the handler, not aiohttp, answers 413 with a JSON body
    app = web.Application(client_max_size=receiver.settings.max_body_bytes)
    app[RECEIVER] = receiver
    app.router.add_post(WEBHOOK_ROUTE, webhook)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app
