"""Stripe API versions: which ones fluxrate reads, and the condition that says so (pure).

Stripe renders every event in one API version: the webhook endpoint's ``api_version``, else the account's default
at the time of the event (the version is fixed when the event is created and shown in ``event.api_version``).
fluxrate reads the shapes its events have had from ``OLDEST_READABLE`` up to the release of the version the
stripe SDK pins (``stripe.api_version``): since 2024-09-30.acacia Stripe ships breaking changes only with a new
named release (acacia, basil, clover, ... in alphabetical order), and monthly versions within one release are
backwards compatible, so every version of the SDK's release reads like the SDK's own. A version of a later
release may have removed a field fluxrate reads (as 2025-03-31.basil removed ``invoice.payment_intent``), so it is
not read until fluxrate is upgraded.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Iterable, Mapping
from typing import Any

import stripe

from fluxrate import conditions as cond

# The oldest version whose event shapes fluxrate reads (checkout.session.*, payment_intent.*, invoice.*).
OLDEST_READABLE = "2020-08-27"
# The first version without ``invoice.payment_intent``; its payments are InvoicePayment objects
# (``invoice_payment.paid``, ``payment.payment_intent``).
BASIL = "2025-03-31.basil"
# The version the managed endpoint is created with, and the newest release fluxrate reads.
SDK_VERSION: str = stripe.api_version

CONDITION = "WebhookApiVersion"
UNREADABLE_WINDOW = dt.timedelta(hours=24)  # the condition stays False this long after an unreadable event
API_VERSIONS_LIMIT = 8  # versions remembered in status.deliveries.apiVersions
VERSION_MAX_LENGTH = 64

_VERSION = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:\.([a-z]+))?$")


@functools.lru_cache(maxsize=64)  # asked on every handled delivery, about a handful of distinct versions
def parse(version: str | None) -> tuple[dt.date, str | None] | None:
    """(date, release name) of ``2025-03-31.basil`` / ``2020-08-27``; None when it is not a Stripe version."""
    match = _VERSION.match(version or "")
    if not match:
        return None
    try:
        day = dt.date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:
        return None
    return day, match.group(4)


def release(version: str | None) -> str | None:
    parsed = parse(version)
    return parsed[1] if parsed else None


def is_basil_or_later(version: str | None) -> bool:
    parsed, basil = parse(version), parse(BASIL)
    assert basil is not None
    return parsed is not None and parsed[0] >= basil[0]


def readable(version: str | None, sdk_version: str = SDK_VERSION) -> bool:
    """Whether fluxrate reads events of ``version``: 2020-08-27 up to the SDK's release (its later monthly
    versions included)."""
    parsed, oldest, sdk = parse(version), parse(OLDEST_READABLE), parse(sdk_version)
    assert oldest is not None and sdk is not None
    if parsed is None or parsed[0] < oldest[0]:
        return False
    return parsed[0] <= sdk[0] or (parsed[1] is not None and parsed[1] == sdk[1])


def readable_range(sdk_version: str = SDK_VERSION) -> str:
    return f"{OLDEST_READABLE} to {sdk_version} (and later {release(sdk_version)} versions)"


def unreadable_reason(version: str | None, sdk_version: str = SDK_VERSION) -> str:
    return (f"the event is in Stripe API version {version or '(none)'}, which this fluxrate does not read (it reads "
            f"{readable_range(sdk_version)}); answered 503 so that Stripe keeps redelivering it")


def _timestamp(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def merge_seen(stored: Iterable[Mapping[str, Any]] | None, seen: Mapping[str, tuple[int, str]],
               sdk_version: str = SDK_VERSION) -> list[dict[str, Any]]:
    """``status.deliveries.apiVersions`` after ``seen`` (version -> (count, last time)): counts add up, the newest
    ``API_VERSIONS_LIMIT`` versions by last delivery are kept, newest first."""
    merged: dict[str, dict[str, Any]] = {}
    for item in stored or ():
        version = item.get("apiVersion")
        if isinstance(version, str):
            merged[version] = dict(item)
    for version, (count, last) in seen.items():
        version = version[:VERSION_MAX_LENGTH]
        item = merged.setdefault(version, {"apiVersion": version, "count": 0})
        item["count"] = int(item.get("count") or 0) + count
        item["lastSeen"] = max(t for t in (item.get("lastSeen"), last) if t)
        item["readable"] = readable(version, sdk_version)
    ordered = sorted(merged.values(), key=lambda i: i.get("lastSeen") or "", reverse=True)
    return ordered[:API_VERSIONS_LIMIT]


def condition(
    api_versions: Iterable[Mapping[str, Any]] | None, *, managed: bool, url: str | None = None,
    now: dt.datetime | None = None, sdk_version: str = SDK_VERSION,
) -> cond.Condition | None:
    """``WebhookApiVersion`` from the versions deliveries arrived in; None before the first delivery."""
    versions = [v for v in api_versions or () if isinstance(v.get("apiVersion"), str)]
    if not versions:
        return None
    now = now or cond.now()
    recent_unreadable = [
        v for v in versions
        if not v.get("readable") and (t := _timestamp(v.get("lastSeen"))) is not None and now - t < UNREADABLE_WINDOW
    ]
    if recent_unreadable:
        names = ", ".join(v["apiVersion"] for v in recent_unreadable)
        message = (
            f"Stripe sent events in API version {names}, which this fluxrate does not read (it reads "
            f"{readable_range(sdk_version)}); they are answered 503, so Stripe keeps redelivering them, and "
            "payments are still found by polling Stripe. "
        )
        if managed:
            message += (f"The managed endpoint is replaced by one in API version {sdk_version}; nothing to do "
                        "(this clears 24 hours after the last such event).")
        else:
            message += (
                f"Fix: give the webhook endpoint API version {sdk_version}. Stripe cannot change an endpoint's "
                f"version: create a new endpoint for {url or 'the same URL'} with that version (stripe "
                f"webhook_endpoints create --url ... --api-version {sdk_version}, the same enabled events; the "
                "Dashboard offers only the account default and the latest version), add its signing secret as a "
                "second line in the Secret, then delete the old endpoint. Or set spec.webhookEndpoint.managed: "
                f"true and fluxrate creates the endpoint with {sdk_version}."
            )
        return cond.Condition(CONDITION, "False", "UnreadableApiVersion", message)
    newest = next((v["apiVersion"] for v in versions if v.get("readable")), None)
    if newest is None:
        return cond.Condition(CONDITION, "True", "Readable",
                              "No webhook event in an unreadable Stripe API version for 24 hours.")
    return cond.Condition(CONDITION, "True", "Readable",
                          f"Webhook events arrive in Stripe API version {newest}, which fluxrate reads.")
