"""kind end-to-end suite: a real cluster, the real image, the chart. Run it with `make e2e`.

Everything here is skipped, with the reason, unless FLUXRATE_E2E=1 and Docker and kind work; `make test`
never runs it.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest


def _missing_prerequisite() -> str | None:
    if os.environ.get("FLUXRATE_E2E") != "1":
        return "the kind end-to-end suite runs only through `make e2e` (FLUXRATE_E2E=1)"
    if shutil.which("docker") is None:
        return "docker is not installed"
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0:
        return "no Docker daemon is reachable (docker info failed)"
    if shutil.which("kind") is None:
        return "kind is not installed"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _missing_prerequisite()
    for item in items:
        if "tests/e2e/" in item.nodeid.replace("\\", "/") or item.nodeid.startswith("tests/e2e"):
            item.add_marker(pytest.mark.e2e)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))
