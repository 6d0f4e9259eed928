"""stripe-mock, Stripe's own API mock, as a judge of the Stripe calls fluxrate makes.

``make stripe-mock`` builds it from the Go module pinned in go.mod here into ``.cache/stripe-mock/`` (``make test``
does so when Go is on PATH). Without the binary these tests skip, unless FLUXRATE_REQUIRE_STRIPE_MOCK=1 (CI), which
makes a missing binary a failure. ``$FLUXRATE_STRIPE_MOCK`` points at another binary.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEFAULT_BINARY = REPO / ".cache" / "stripe-mock" / "stripe-mock"
_LISTENING = re.compile(r"Listening for HTTP at address: (\S+)")


def stripe_mock_binary() -> Path:
    path = Path(os.environ.get("FLUXRATE_STRIPE_MOCK") or DEFAULT_BINARY)
    if path.is_file() and os.access(path, os.X_OK):
        return path
    message = f"stripe-mock is not built at {path}: run `make stripe-mock` (needs Go on PATH)"
    if os.environ.get("FLUXRATE_REQUIRE_STRIPE_MOCK") == "1":
        pytest.fail(f"{message} (FLUXRATE_REQUIRE_STRIPE_MOCK=1 forbids skipping)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def stripe_mock_url() -> Iterator[str]:
    """A stripe-mock serving plain HTTP on a free loopback port, for the whole session."""
    binary = stripe_mock_binary()
    proc = subprocess.Popen([str(binary), "-http-addr", "127.0.0.1:0"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        seen: list[str] = []
        deadline = time.monotonic() + 60
        address = None
        while address is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            match = _LISTENING.search(line)
            if match:
                address = match.group(1)
        if address is None:
            pytest.fail(f"stripe-mock did not start: {''.join(seen)[-2000:]}", pytrace=False)
        # keep reading its log (one line per request) so it never blocks on a full pipe
        threading.Thread(target=proc.stdout.read, daemon=True).start()
        yield f"http://{address}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
