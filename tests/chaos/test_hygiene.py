"""The secret search of scenario 9 finds what it looks for (so that its 0 means something)."""

from __future__ import annotations

import base64

from fluxrate_sandbox.chaos.hygiene import secret_hits
from fluxrate_sandbox.chaos.stack import Evidence

SECRET = "whsec_" + "Zx9" * 10


def test_raw_and_base64_secrets_are_found_wherever_they_are() -> None:
    evidence = Evidence(secrets={SECRET, "sk_test_notleaked"})
    evidence.add("logs (1-storm receiver)", f"verified with {SECRET}\n")
    evidence.add("Events (2-outage)", base64.b64encode(SECRET.encode()).decode())
    evidence.add("HTTP answers (6-hostile)", '{"outcome": "signature_failed"}')
    hits = secret_hits(evidence)
    assert len(hits) == 2
    assert any(h.startswith("logs (1-storm receiver): raw") for h in hits)
    assert any(h.startswith("Events (2-outage): base64") for h in hits)
    assert not any(SECRET in h for h in hits)  # the report itself shows only a prefix


def test_nothing_to_find_is_no_hit() -> None:
    evidence = Evidence(secrets={SECRET})
    evidence.add("metrics (1-storm)", "fluxrate_receiver_deliveries_total 3\n")
    assert secret_hits(evidence) == []
