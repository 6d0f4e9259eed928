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
    summary = output.split("Summary", 1)[1]
    assert "inv-2026-0001  Paid" in summary
    assert "emails sent: 2; payment links created: 2" in summary
