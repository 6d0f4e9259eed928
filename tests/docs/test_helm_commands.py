"""The `helm install` commands of the README and the user guide render with the chart as written."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
HELM = shutil.which("helm", path=str(Path(sys.executable).parent))


def helm_install_commands(path: Path) -> list[list[str]]:
    text = path.read_text().replace("\\\n", " ")
    return [shlex.split(line.strip()) for line in text.splitlines() if re.match(r"\s*helm install ", line)]


@pytest.mark.parametrize("doc", ["README.md", "docs/user-guide.md"])
def test_documented_helm_install_renders(doc: str) -> None:
    assert HELM, "helm is installed into the venv by the Makefile (scripts/fetch_helm.py)"
    (command,) = helm_install_commands(ROOT / doc)
    args = [a for a in command[2:] if a != "--create-namespace"]
    result = subprocess.run([HELM, "template", *args], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    kinds = [d["kind"] for d in yaml.safe_load_all(result.stdout) if d]
    assert "Ingress" in kinds and kinds.count("Deployment") == 2
