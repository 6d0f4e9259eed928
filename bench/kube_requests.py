"""Which Kubernetes requests a phase made, from the sandbox emulator's request log (its last 2000 requests)."""

from __future__ import annotations

from collections import Counter
from urllib.parse import parse_qs, urlsplit

from fluxrate.sandbox.kube_server import KubeSandbox


def classify(method: str, path_qs: str) -> str:
    """``PATCH invoices/status``, ``POST events``, ``LIST invoices``, ``WATCH invoices`` ..."""
    url = urlsplit(path_qs)
    parts = [p for p in url.path.split("/") if p]
    parts = parts[2:] if parts[:1] == ["api"] else parts[3:] if parts[:1] == ["apis"] else parts
    if parts[:1] == ["namespaces"] and len(parts) >= 3:
        parts = parts[2:]
    resource = "/".join([parts[0], *parts[2:3]]) if parts else url.path
    verb = method
    if method == "GET":
        verb = "WATCH" if parse_qs(url.query).get("watch") == ["true"] else "GET" if len(parts) >= 2 else "LIST"
    return f"{verb} {resource}"


def start_log(kube: KubeSandbox) -> None:
    kube.emulator.request_log.clear()


def breakdown(kube: KubeSandbox) -> dict[str, int] | None:
    """Requests answered since ``start_log``, by verb and resource; None when the log overflowed."""
    log = kube.emulator.request_log
    if log.maxlen is not None and len(log) >= log.maxlen:
        return None
    return dict(Counter(classify(method, path) for method, path, _ in log).most_common())
