"""Webhook endpoints and signed event delivery of the Stripe stand-in."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from stripe import WebhookSignature

# Stripe retries failed deliveries with exponential backoff for up to three days in live mode
# (a few hours in test mode). Delays in real seconds, before attempt 2, 3, ...; multiplied by the
# stand-in's `webhook_time_scale` so tests see the schedule in milliseconds.
RETRY_SCHEDULE_S: tuple[float, ...] = (
    60.0, 300.0, 1800.0, 3600.0, 2 * 3600.0, 4 * 3600.0, 8 * 3600.0, 12 * 3600.0, 24 * 3600.0,
)
USER_AGENT = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"


@dataclass
class WebhookEndpoint:
    id: str
    account_id: str
    livemode: bool
    url: str
    enabled_events: list[str]
    secrets: list[str]
    created: int
    api_version: str | None = None
    description: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    status: str = "enabled"
    # secret -> monotonic time after which it stops signing (rolled secrets keep signing for an overlap)
    secret_expiry: dict[str, float] = field(default_factory=dict)

    def wants(self, event_type: str) -> bool:
        return self.status == "enabled" and ("*" in self.enabled_events or event_type in self.enabled_events)

    def current_secrets(self) -> list[str]:
        now = time.monotonic()
        live = [s for s in self.secrets if self.secret_expiry.get(s, float("inf")) > now]
        self.secrets = live
        return list(live)

    def to_api(self, *, with_secret: bool = False) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "id": self.id,
            "object": "webhook_endpoint",
            "api_version": self.api_version,
            "application": None,
            "created": self.created,
            "description": self.description,
            "enabled_events": list(self.enabled_events),
            "livemode": self.livemode,
            "metadata": dict(self.metadata),
            "status": self.status,
            "url": self.url,
        }
        if with_secret:
            obj["secret"] = self.secrets[-1]
        return obj


def sign_payload(payload: str, secrets: Sequence[str], timestamp: int | None = None) -> str:
    """`Stripe-Signature` value: ``t=...`` then one ``v1=`` per current secret (several during a roll)."""
    ts = int(time.time()) if timestamp is None else timestamp
    parts = [f"t={ts}"]
    for secret in secrets:
        header = WebhookSignature.generate_signature_header(payload, secret, timestamp=ts)
        parts.append(header.split(",", 1)[1])
    return ",".join(parts)


@dataclass(frozen=True)
class DeliveryAttempt:
    event_id: str
    event_type: str
    endpoint_id: str
    url: str
    attempt: int
    copy: int
    status: int | None  # None: connection error / timeout / skipped
    error: str | None
    at: float  # time.time()
    duration_s: float


class WebhookDispatcher:
    """Sends events to endpoints and retries until a 2xx; every attempt is recorded in `log`."""

    def __init__(
        self,
        *,
        time_scale: float,
        max_attempts_test: int,
        max_attempts_live: int,
        timeout_s: float,
        lookup_endpoint: Callable[[str], WebhookEndpoint | None],
        render: Callable[[dict[str, Any], str | None], dict[str, Any]] | None = None,
        on_result: Callable[[str, str, bool], None] | None = None,
    ) -> None:
        self.time_scale = time_scale
        self.max_attempts_test = max_attempts_test
        self.max_attempts_live = max_attempts_live
        self.timeout_s = timeout_s
        self.log: list[DeliveryAttempt] = []
        self._lookup = lookup_endpoint
        # (event, endpoint api_version) -> the event as that endpoint gets it (stripe_versions.VersionRenderer)
        self._render = render
        # told (event id, endpoint id, succeeded) after every attempt: what ``delivery_success`` lists by
        self._on_result = on_result
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession()

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    def retry_delay(self, attempt: int) -> float:
        """Delay before attempt number ``attempt + 1`` (scaled)."""
        index = min(attempt - 1, len(RETRY_SCHEDULE_S) - 1)
        return RETRY_SCHEDULE_S[index] * self.time_scale

    def spawn(self, coro: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        self._idle.clear()
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not self._tasks:
            self._idle.set()

    async def wait_idle(self, within_s: float | None = None) -> None:
        async with asyncio.timeout(within_s):
            while self._tasks:
                await self._idle.wait()

    @property
    def pending(self) -> int:
        return len(self._tasks)

    async def deliver_first(
        self, event: dict[str, Any], endpoint_id: str, copy: int = 0
    ) -> asyncio.Task[None] | None:
        """First attempt inline; on failure the retries continue in the returned background task.

        The payload is rendered once, in the endpoint's API version (its retries resend the same bytes)."""
        endpoint = self._lookup(endpoint_id)
        if self._render is not None and endpoint is not None:
            event = self._render(event, endpoint.api_version)
        payload = json.dumps(event, indent=2)
        if await self._attempt(event, payload, endpoint_id, 1, copy):
            return None
        max_attempts = self.max_attempts_live if event.get("livemode") else self.max_attempts_test
        if self._lookup(endpoint_id) is None or max_attempts <= 1:
            return None
        return self.spawn(self._retry_loop(event, payload, endpoint_id, copy, max_attempts))

    async def _retry_loop(
        self, event: dict[str, Any], payload: str, endpoint_id: str, copy: int, max_attempts: int
    ) -> None:
        for attempt in range(2, max_attempts + 1):
            await asyncio.sleep(self.retry_delay(attempt - 1))
            if await self._attempt(event, payload, endpoint_id, attempt, copy):
                return

    async def _attempt(
        self, event: dict[str, Any], payload: str, endpoint_id: str, attempt: int, copy: int
    ) -> bool:
        endpoint = self._lookup(endpoint_id)
        started = time.monotonic()
        url = endpoint.url if endpoint is not None else ""
        if endpoint is None or endpoint.status != "enabled":
            self._record(event, endpoint_id, url, attempt, copy, None, "endpoint deleted or disabled", started)
            return True  # nothing more to do: Stripe stops retrying to removed/disabled endpoints
        assert self._session is not None, "stand-in not started"
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": USER_AGENT,
            "Stripe-Signature": sign_payload(payload, endpoint.current_secrets()),
        }
        try:
            async with self._session.post(
                endpoint.url,
                data=payload.encode(),
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            ) as resp:
                await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._record(event, endpoint_id, url, attempt, copy, None, type(exc).__name__, started)
            return False
        self._record(event, endpoint_id, url, attempt, copy, status, None, started)
        return 200 <= status < 300

    def _record(
        self,
        event: dict[str, Any],
        endpoint_id: str,
        url: str,
        attempt: int,
        copy: int,
        status: int | None,
        error: str | None,
        started: float,
    ) -> None:
        self.log.append(
            DeliveryAttempt(
                event_id=event["id"],
                event_type=event["type"],
                endpoint_id=endpoint_id,
                url=url,
                attempt=attempt,
                copy=copy,
                status=status,
                error=error,
                at=time.time(),
                duration_s=time.monotonic() - started,
            )
        )
        if self._on_result is not None:
            self._on_result(event["id"], endpoint_id, status is not None and 200 <= status < 300)
