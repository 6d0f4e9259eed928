"""Fixtures for the Stripe stand-in tests (imported by name from the test modules)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import stripe
from aiohttp import web

from fluxrate.stripe_api import build_stripe_client, close_stripe_client
from fluxrate_sandbox.stripe_standin import StripeStandin


@dataclass
class Received:
    body: bytes
    headers: dict[str, str]
    answered: int

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A tiny webhook receiver: answers statuses from `script` first, then `default_status`."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    script: list[int] = field(default_factory=list)
    default_status: int = 200

    async def handle(self, request: web.Request) -> web.Response:
        status = self.script.pop(0) if self.script else self.default_status
        self.received.append(Received(await request.read(), dict(request.headers), status))
        return web.json_response({"received": True}, status=status)

    def types(self) -> list[str]:
        return [r.event["type"] for r in self.received]

    def ids(self) -> list[str]:
        return [r.event["id"] for r in self.received]


@pytest.fixture
async def standin() -> AsyncIterator[StripeStandin]:
    async with StripeStandin(rate_limit_test=200, webhook_time_scale=0.0001) as s:
        yield s


@pytest.fixture
def account(standin: StripeStandin) -> tuple[str, str]:
    return standin.add_account()


@pytest.fixture
async def client(standin: StripeStandin, account: tuple[str, str]) -> AsyncIterator[stripe.StripeClient]:
    c = build_stripe_client(account[1], api_base=standin.url, max_network_retries=0)
    yield c
    await close_stripe_client(c)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    recv = Receiver()
    app = web.Application()
    app.router.add_post("/hook", recv.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    recv.url = f"http://127.0.0.1:{port}/hook"
    yield recv
    await runner.cleanup()


def link_params(
    *, amount: int = 1999, currency: str = "usd", quantity: int = 1, invoice: str = "inv-1", **extra: Any
) -> dict[str, Any]:
    params: dict[str, Any] = {
        "line_items": [
            {
                "price_data": {"currency": currency, "product_data": {"name": f"Invoice {invoice}"},
                               "unit_amount": amount},
                "quantity": quantity,
            }
        ],
        "metadata": {"invoice_id": invoice, "customer_id": "cust-1", "namespace": "default",
                     "invoice_uid": f"uid-{invoice}"},
        "payment_intent_data": {"metadata": {"invoice_id": invoice, "invoice_uid": f"uid-{invoice}"}},
    }
    params.update(extra)
    return params
