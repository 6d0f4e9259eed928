"""`fluxrate demo` end to end, as `make demo` runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_demo_ends_with_the_invoice_paid(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fluxrate", "demo", "--state-dir", str(tmp_path / "demo")],
        capture_output=True, text=True, timeout=120,
    )
    output = result.stdout
    assert result.returncode == 0, output + result.stderr
    for step in ("StripeIntegration connects", "managed endpoint: we_", "Finalized → Open", "Subject: Invoice",
                 "lastPaymentError: Your card was declined.", "is Paid: 236.50 USD", "duplicate",
                 "active=false in Stripe", "Summary"):
        assert step in output, f"missing step {step!r} in:\n{output}"
    summary = output.split("Summary", 1)[1]
    assert "inv-2026-0001  Paid" in summary
    assert "emails sent: 2; payment links created: 2" in summary
    assert "\033[" not in output  # no colour when not on a terminal
