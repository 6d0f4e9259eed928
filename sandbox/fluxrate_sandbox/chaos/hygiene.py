"""Scenario 9: every secret value of the run, searched for in every log, Event, status, email, metric and answer."""

from __future__ import annotations

import base64
import random

from fluxrate_sandbox.chaos.outcome import Outcome
from fluxrate_sandbox.chaos.stack import Evidence


def secret_hits(evidence: Evidence) -> list[str]:
    """``where: how`` for each secret found, raw or base64-encoded (as a Secret's data would carry it)."""
    hits = []
    for secret in sorted(evidence.secrets):
        forms = {"raw": secret, "base64": base64.b64encode(secret.encode()).decode()}
        for where, text in evidence.haystacks.items():
            hits.extend(f"{where}: {how} {secret[:8]}…" for how, form in forms.items() if form in text)
    return hits


def secret_hygiene(evidence: Evidence, scenarios_run: int, rng: random.Random, outcome: Outcome) -> None:
    hits = secret_hits(evidence)
    kinds: dict[str, int] = {}
    for secret in evidence.secrets:
        prefix = secret.split("_", 2)[0] + "_" + (secret.split("_", 2)[1] if secret.startswith("sk_") else "")
        kinds[prefix.rstrip("_")] = kinds.get(prefix.rstrip("_"), 0) + 1
    outcome.figures.update({
        "scenarios searched": scenarios_run, "secret values": len(evidence.secrets),
        **{f"secrets {k}": v for k, v in sorted(kinds.items())},
        "places searched": len(evidence.haystacks),
        "MB searched": round(sum(len(t) for t in evidence.haystacks.values()) / 1e6, 1),
        "secret hits": len(hits),
    })
    if hits:
        outcome.figures["first hits"] = "; ".join(hits[:5])
    outcome.check("secrets and places to search were collected", bool(evidence.secrets and evidence.haystacks))
    outcome.check("0 secret hits", not hits)
