"""What ships: the wheel (and so the image, which installs it) carries the operator, the receiver and their shared
modules, and none of the test stack (sandbox, chaos, demo), which is the separate fluxrate-sandbox package."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEST_STACK = re.compile(r"fluxrate_sandbox|hypothesis|kmock|aiosmtpd|cel-python|celpy")


@pytest.fixture(scope="module")
def wheel_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    out = tmp_path_factory.mktemp("wheel")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                            "--wheel-dir", str(out), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    (wheel,) = out.glob("fluxrate-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return {name: archive.read(name).decode("utf-8", errors="replace") for name in archive.namelist()}


def test_the_wheel_holds_only_the_product(wheel_files: dict[str, str]) -> None:
    packages = {name.split("/")[0] for name in wheel_files}
    assert {p for p in packages if not p.endswith(".dist-info")} == {"fluxrate"}
    modules = {name for name in wheel_files if name.endswith(".py")}
    assert "fluxrate/operator/main.py" in modules and "fluxrate/webhook_receiver/app.py" in modules
    for forbidden in ("fluxrate/sandbox/", "fluxrate/chaos/", "fluxrate/demo/"):
        assert not [m for m in modules if m.startswith(forbidden)], forbidden


def test_no_shipped_module_or_requirement_reaches_for_the_test_stack(wheel_files: dict[str, str]) -> None:
    for name, text in wheel_files.items():
        if name.endswith(".py"):
            imports = [line for line in text.splitlines() if line.lstrip().startswith(("import ", "from "))]
            assert not [line for line in imports if TEST_STACK.search(line)], name
    (metadata,) = [text for name, text in wheel_files.items() if name.endswith(".dist-info/METADATA")]
    runtime = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert runtime and not [line for line in runtime if TEST_STACK.search(line)]


def test_the_image_copies_only_the_product_into_its_build() -> None:
    copies = [line.split()[1] for line in (ROOT / "Dockerfile").read_text().splitlines()
              if line.startswith("COPY ") and "--from" not in line]
    assert "fluxrate" in copies
    assert not [c for c in copies if c.startswith(("sandbox", "tests", "bench"))]
