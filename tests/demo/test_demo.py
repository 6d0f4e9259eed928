"""`fluxrate demo` end to end, as `make demo` runs it."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

# What the demo's emails are, by kind: one invoice email per example invoice, the paid invoice's receipt, and the
# reminder of the invoice that falls due during the demo (after-0d, the moment it is overdue).
EMAILS = "emails sent: 4 (invoice 2, receipt 1, reminder 1); payment links created: 2"
DEMO_BUDGET = 10.0  # seconds, `make demo` on the emulator (the bound)


def section(output: str, title: str) -> str:
    """The narration of one step: from its title to the next step's timestamp."""
    assert title in output, f"missing step {title!r} in:\n{output}"
    return output.split(title, 1)[1].split("\n[", 1)[0]


def columns(text: str, name: str) -> list[str]:
    """The cells of the first row whose first cell starts with ``name``, in a table the demo (or kubectl) printed."""
    return next(cells for cells in map(str.split, text.splitlines()) if cells and cells[0].startswith(name))


def listed(text: str, name: str) -> dict[str, str]:
    """The row of ``name`` in a `kubectl get` table (the demo's or kubectl's), by column header: a cell starts
    where its header starts, and a field not set is blank."""
    lines = text.splitlines()
    row = next(i for i, line in enumerate(lines) if line.split() and line.split()[0].endswith(name))
    header = next(lines[i] for i in range(row, -1, -1) if lines[i].split()[:1] == ["NAME"])
    starts = [m.start() for m in re.finditer(r"\S+", header)]
    cells = [lines[row][a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
    return dict(zip(header.split(), cells, strict=True))


def assert_after_payment(output: str) -> None:
    """The receipt, the partial refund, the overdue reminder and `kubectl get inv` as the demo narrates them."""
    receipt = section(output, "The customer's receipt for inv-2026-0001")
    assert "Subject: Receipt for invoice inv-2026-0001: 236.50 USD paid" in receipt
    assert "Payment method: Visa ending 4242" in receipt and "https://pay.stripe.com/receipts/" in receipt
    refund = section(output, "The merchant refunds 12.50 USD of inv-2026-0001")
    assert "events: refund.created, charge.refunded" in refund
    assert columns(refund, "re_")[1:4] == ["12.50", "USD", "succeeded"], refund
    assert "status.amountRefunded: 12.50 USD of 236.50 USD; phase stays Paid" in refund
    assert "inv-2026-0002 falls due in 2 seconds" in output
    overdue = section(output, "inv-2026-0002 is past its due date")
    assert "condition Overdue=True (PastDue): Due " in overdue and "next reminder after-3d" in overdue
    assert columns(overdue, "after-0d")[1] == columns(overdue, "after-0d")[2], overdue  # sent when it fell due
    assert columns(overdue, "before-1d")[-1] == "BeforeInvoiceEmail", overdue  # not due by the time it was issued
    assert "To: Tanaka Trading <keiri@tanaka.example>" in overdue
    assert "Subject: Overdue: invoice inv-2026-0002, 60000 JPY was due on " in overdue
    listing = section(output, "What `kubectl -n demo get inv` shows")
    assert_listing(listing)


def assert_listing(listing: str) -> None:
    """`kubectl get inv` after the demo: the refunded amount and Overdue in their printer columns."""
    paid, due = listed(listing, "inv-2026-0001"), listed(listing, "inv-2026-0002")
    assert (paid["PHASE"], paid["TOTAL"], paid["REFUNDED"], paid["OVERDUE"]) == ("Paid", "236.50", "12.50", ""), listing
    assert (due["PHASE"], due["TOTAL"], due["REFUNDED"], due["OVERDUE"]) == ("Open", "60000", "", "True"), listing


def test_demo_ends_with_the_invoice_paid(tmp_path: Path) -> None:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "fluxrate", "demo", "--state-dir", str(tmp_path / "demo")],
        capture_output=True, text=True, timeout=120,
    )
    took = time.monotonic() - started
    output = result.stdout
    assert result.returncode == 0, output + result.stderr
    for step in ("StripeIntegration connects", "managed endpoint: we_", "Finalized → Open", "Subject: Invoice",
                 "lastPaymentError: Your card was declined.", "is Paid: 236.50 USD", "duplicate",
                 "active=false in Stripe", "Summary"):
        assert step in output, f"missing step {step!r} in:\n{output}"
    assert_after_payment(output)
    summary = output.split("Summary", 1)[1]
    assert columns(summary, "inv-2026-0001")[1:6] == ["Paid", "236.50", "USD", "12.50", "USD"], summary
    assert EMAILS in summary
    assert "\033[" not in output  # no colour when not on a terminal
    assert took < DEMO_BUDGET, f"the demo took {took:.1f} s (budget {DEMO_BUDGET} s):\n{output}"


def test_demo_keep_leaves_a_cluster_kubectl_can_reach(tmp_path: Path) -> None:
    import os
    import shutil
    import signal
    import time

    kubectl = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl")
    assert kubectl, "kubectl is installed into the venv by the Makefile"
    process = subprocess.Popen(
        [sys.executable, "-m", "fluxrate", "demo", "--keep", "--state-dir", str(tmp_path / "demo")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        lines: list[str] = []
        deadline = time.monotonic() + 90
        assert process.stdout is not None
        while not any(line.startswith("export KUBECONFIG=") for line in lines):
            assert time.monotonic() < deadline and process.poll() is None, "".join(lines)
            lines.append(process.stdout.readline().strip())
        kubeconfig = next(line for line in lines if line.startswith("export KUBECONFIG=")).split("=", 1)[1]
        got = subprocess.run([kubectl, "-n", "demo", "get", "invoices,stripeintegrations"], capture_output=True,
                             text=True, timeout=30, env={**os.environ, "KUBECONFIG": kubeconfig})
        assert got.returncode == 0, got.stderr
        assert "inv-2026-0001" in got.stdout and "Paid" in got.stdout and "production-stripe" in got.stdout
        assert_listing(got.stdout)  # kubectl's own printer columns show what the demo printed
    finally:
        process.send_signal(signal.SIGINT)
        try:
            assert process.wait(timeout=30) == 0
        finally:
            if process.poll() is None:
                process.kill()


def test_demo_on_the_real_kube_apiserver(tmp_path: Path) -> None:
    """`fluxrate demo --kube real`: the same flow on the real kube-apiserver, etcd and controller-manager."""
    from tests.conftest import built_realkube

    built_realkube()
    result = subprocess.run(
        [sys.executable, "-m", "fluxrate", "demo", "--kube", "real", "--state-dir", str(tmp_path / "demo")],
        capture_output=True, text=True, timeout=240,
    )
    output = result.stdout
    assert result.returncode == 0, output + result.stderr
    assert "Starting the sandbox: real kube-apiserver" in output
    assert_after_payment(output)
    summary = output.split("Summary", 1)[1]
    assert columns(summary, "inv-2026-0001")[1] == "Paid", summary
    assert EMAILS in summary
