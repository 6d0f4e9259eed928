#!/usr/bin/env python3
"""Vendor the parts of Stripe's OpenAPI description that fluxrate uses into tests/stripe_openapi/.

The full description (``spec3.json``, about 8 MB) ships inside the ``github.com/stripe/stripe-mock`` Go module
(``embedded/openapi/``), the module pinned in tests/stripe_mock/go.mod. This script takes that file (from the Go
module cache, downloading the pinned module through the Go module proxy when it is missing, or from ``--spec``)
and writes a subset: the schemas reachable from the objects fluxrate and the Stripe stand-in handle, and the
200 response schemas of the operations fluxrate calls. Expansions (``x-expansionResources``) are pruned to their
id form: an expandable field is an id unless ``expand[]`` asks for it, and the conformance tests check the one
expansion fluxrate asks for (a PaymentIntent's ``latest_charge``) as the object it expands to.

The description's ``api_errors.code`` is a free string and ``event.type`` has no enum in the GA file, so the
subset also records, under ``x-fluxrate``, Stripe's documented error codes and event types as the installed
stripe SDK (the version fluxrate pins) carries them in its generated types, and the field-name differences
between the description's objects and the SDK's resource classes (the SDK may pin a newer API version).

Re-run after bumping the stripe-mock pin or the stripe SDK:

    .venv/bin/python scripts/vendor_stripe_openapi.py

Options: ``--spec PATH`` (a spec3.json to use instead), ``--out DIR`` (default tests/stripe_openapi).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PIN_MODULE = REPO / "tests" / "stripe_mock" / "go.mod"
MODULE = "github.com/stripe/stripe-mock"
OUT = REPO / "tests" / "stripe_openapi"
SUBSET = "stripe_openapi_subset.json"

# Objects fluxrate reads or the stand-in answers with / sends in events.
ROOT_SCHEMAS = (
    "account", "charge", "checkout.session", "deleted_webhook_endpoint", "dispute", "error", "event", "invoice",
    "invoice_payment", "item", "payment_intent", "payment_link", "refund", "webhook_endpoint",
)
# Operations fluxrate calls (or that reach the stand-in): their 200 response schemas (the list wrappers).
OPERATIONS = (
    ("get", "/v1/account"),
    ("get", "/v1/payment_links"), ("post", "/v1/payment_links"),
    ("get", "/v1/payment_links/{payment_link}"), ("post", "/v1/payment_links/{payment_link}"),
    ("get", "/v1/payment_links/{payment_link}/line_items"),
    ("get", "/v1/webhook_endpoints"), ("post", "/v1/webhook_endpoints"),
    ("get", "/v1/webhook_endpoints/{webhook_endpoint}"), ("post", "/v1/webhook_endpoints/{webhook_endpoint}"),
    ("delete", "/v1/webhook_endpoints/{webhook_endpoint}"),
    ("get", "/v1/checkout/sessions"), ("get", "/v1/checkout/sessions/{session}"),
    ("get", "/v1/payment_intents/{intent}"), ("get", "/v1/charges/{charge}"),
    ("get", "/v1/refunds"), ("post", "/v1/refunds"), ("get", "/v1/refunds/{refund}"),
    ("post", "/v1/refunds/{refund}/cancel"),
    ("get", "/v1/disputes/{dispute}"), ("post", "/v1/disputes/{dispute}"), ("post", "/v1/disputes/{dispute}/close"),
    ("get", "/v1/events"), ("get", "/v1/events/{id}"),
    ("get", "/v1/invoices/{invoice}"), ("get", "/v1/invoice_payments"),
    ("get", "/v1/invoice_payments/{invoice_payment}"),
)
# Resource classes of the SDK compared with the description's objects (field names only).
SDK_CLASSES = {
    "account": "Account", "charge": "Charge", "checkout.session": "checkout.Session", "dispute": "Dispute",
    "event": "Event", "invoice": "Invoice", "invoice_payment": "InvoicePayment", "payment_intent": "PaymentIntent",
    "payment_link": "PaymentLink", "refund": "Refund", "webhook_endpoint": "WebhookEndpoint",
}
_REF = "#/components/schemas/"
_DROP_KEYS = {"description", "title", "x-stripeBypassValidation", "x-stripeOperations", "x-stripeResource",
              "x-stripeMostCommon", "x-stripeParam", "x-stripeNotPublic"}


def pinned_version() -> str:
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(MODULE)}\s+(v\S+)", PIN_MODULE.read_text(), re.M)
    if match is None:
        sys.exit(f"{PIN_MODULE} does not require {MODULE}")
    return match.group(1)


def module_dir(version: str) -> Path:
    """The pinned stripe-mock module's directory in the Go module cache (downloaded through the proxy if needed)."""
    if shutil.which("go") is None:
        sys.exit("go is not on PATH: pass --spec PATH/TO/spec3.json (stripe-mock's embedded/openapi/spec3.json)")
    out = subprocess.run(["go", "mod", "download", "-json", f"{MODULE}@{version}"], check=True,
                         capture_output=True, text=True, cwd=PIN_MODULE.parent).stdout
    return Path(json.loads(out)["Dir"])


def _strip(node: Any) -> Any:
    """Drop prose and Stripe-internal annotations; prune expansions to the id form."""
    if isinstance(node, list):
        return [_strip(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: ({name: _strip(sub) for name, sub in v.items()} if k == "properties" else _strip(v))
           for k, v in node.items() if k not in _DROP_KEYS}
    if "x-expansionResources" in node:
        pruned = sorted(alt["$ref"][len(_REF):] for alt in node["anyOf"] if "$ref" in alt)
        out["anyOf"] = [alt for alt in out["anyOf"] if "$ref" not in alt]
        out["x-expansionResources"] = pruned  # names only: what `expand[]` would return
    if out.get("anyOf") and len(out["anyOf"]) == 1 and "x-expansionResources" in out:
        out.update(out.pop("anyOf")[0])
    return out


def _refs(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(_REF):
            found.add(ref[len(_REF):])
        for key, value in node.items():
            if key != "x-expansionResources":
                found |= _refs(value)
    elif isinstance(node, list):
        for value in node:
            found |= _refs(value)
    return found


def _literal_values(annotation: Any) -> list[str]:
    """The strings of a (possibly unevaluated) ``Optional[Literal[...]]`` / ``List[Literal[...]]`` annotation."""
    text = annotation if isinstance(annotation, str) else repr(annotation)
    return [a or b for a, b in re.findall(r'"([^"]+)"|\'([^\']+)\'', text[text.index("Literal[") :])]


def _annotations(cls: Any) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        found.update(getattr(klass, "__annotations__", {}))
    return found


def sdk_facts(schemas: dict[str, Any]) -> dict[str, Any]:
    import stripe
    from stripe.params import WebhookEndpointCreateParams

    error_codes = sorted(set(_literal_values(
        _annotations(stripe.PaymentIntent.LastPaymentError)["code"])))
    event_types = sorted(set(_literal_values(
        _annotations(WebhookEndpointCreateParams)["enabled_events"])))
    drift: dict[str, Any] = {}
    for name, path in SDK_CLASSES.items():
        cls: Any = stripe
        for part in path.split("."):
            cls = getattr(cls, part)
        sdk_fields = {k for k in _annotations(cls) if not k.isupper() and not k.startswith("_")}
        spec_fields = set(schemas[name].get("properties", {}))
        only_sdk, only_spec = sorted(sdk_fields - spec_fields), sorted(spec_fields - sdk_fields)
        if only_sdk or only_spec:
            drift[name] = {"only_in_sdk": only_sdk, "only_in_description": only_spec}
    return {
        "sdk": {"stripe_python": stripe.VERSION, "api_version": stripe.api_version},
        "error_codes": error_codes,
        "error_codes_source": "stripe-python PaymentIntent.LastPaymentError.code (Stripe's documented error codes)",
        "event_types": event_types,
        "event_types_source": "stripe-python WebhookEndpointCreateParams.enabled_events",
        "sdk_field_drift": drift,
    }


def build(spec: dict[str, Any], source: str) -> dict[str, Any]:
    schemas = spec["components"]["schemas"]
    paths: dict[str, Any] = {}
    for method, path in OPERATIONS:
        op = spec["paths"][path][method]
        paths.setdefault(path, {})[method] = {
            "operationId": op.get("operationId"),
            "responses": {code: _strip(op["responses"][code]) for code in ("200", "default")},
        }
    keep: dict[str, Any] = {}
    todo = list(ROOT_SCHEMAS) + sorted(_refs(paths))
    while todo:
        name = todo.pop()
        if name in keep:
            continue
        keep[name] = _strip(schemas[name])
        todo.extend(sorted(_refs(keep[name]) - set(keep)))
    return {
        "openapi": spec["openapi"],
        "info": {"title": spec["info"]["title"], "version": spec["info"]["version"], "x-source": source},
        "paths": paths,
        "components": {"schemas": dict(sorted(keep.items()))},
        "x-fluxrate": sdk_facts(schemas),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", type=Path, help="a full spec3.json (default: the pinned stripe-mock module's)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if args.spec is not None:
        spec_path, source = args.spec, f"{args.spec.name} (given with --spec)"
        license_path = None
    else:
        version = pinned_version()
        root = module_dir(version)
        spec_path = root / "embedded" / "openapi" / "spec3.json"
        source = f"{MODULE}@{version} embedded/openapi/spec3.json"
        license_path = root / "LICENSE"
    spec = json.loads(spec_path.read_text())
    subset = build(spec, source)
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / SUBSET
    target.write_text(json.dumps(subset, indent=1, sort_keys=True) + "\n")
    if license_path is not None:
        shutil.copyfile(license_path, args.out / "LICENSE")
    schemas = subset["components"]["schemas"]
    print(f"{target.relative_to(REPO) if target.is_relative_to(REPO) else target}: API {subset['info']['version']}, "
          f"{len(schemas)} schemas, {len(subset['paths'])} paths, {target.stat().st_size // 1024} KiB "
          f"(from {source}; SDK pins {subset['x-fluxrate']['sdk']['api_version']})")
    for name, diff in subset["x-fluxrate"]["sdk_field_drift"].items():
        print(f"  {name}: only in SDK {diff['only_in_sdk']}, only in description {diff['only_in_description']}")


if __name__ == "__main__":
    main()
