"""The chaos suite at CI size (counts divided by 5), as ``make test`` runs it:
``python -m fluxrate_sandbox.chaos --size ci`` with real operator and receiver processes; one test per scenario
reads its figures and expectations."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from fluxrate_sandbox.chaos.runner import KEYS


@pytest.fixture(scope="module")
def chaos_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("chaos")
    result = subprocess.run(
        [sys.executable, "-m", "fluxrate_sandbox.chaos", "--size", "ci", "--json", str(folder / "figures.json"),
         "--work-dir", str(folder / "work")],
        capture_output=True, text=True, timeout=560,
    )
    assert (folder / "figures.json").exists(), result.stdout + result.stderr
    run: dict[str, Any] = json.loads((folder / "figures.json").read_text())
    run["output"] = result.stdout
    run["work_dir"] = str(folder / "work")
    return run


@pytest.mark.timeout(600)
@pytest.mark.parametrize("scenario", KEYS)
def test_scenario_meets_its_expectations(chaos_run: dict[str, Any], scenario: str) -> None:
    (outcome,) = [o for o in chaos_run["scenarios"] if o["scenario"] == scenario]
    context = (f"seed {chaos_run['seed']}, logs in {chaos_run['work_dir']}\n"
               + json.dumps({k: outcome[k] for k in ("figures", "checks", "error")}, indent=1))
    assert outcome["error"] is None, context
    failed = [c for c, held in outcome["checks"].items() if not held]
    assert not failed, f"{failed} in {context}"


@pytest.mark.timeout(600)
def test_the_run_prints_the_figures_table(chaos_run: dict[str, Any]) -> None:
    output = chaos_run["output"]
    assert "fluxrate chaos suite — size ci" in output
    assert "kills between SMTP acceptance and status write" in output  # the email contract's allowance, printed
    for outcome in chaos_run["scenarios"]:
        assert outcome["title"] in output
    assert f"/{len(KEYS)} scenarios met their expectations" in output
    assert chaos_run["scenarios"][-1]["figures"]["scenarios searched"] == len(KEYS) - 1
