"""The figures table (printed) and the JSON record of a run."""

from __future__ import annotations

import json
import os
import platform
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fluxrate_sandbox.chaos.outcome import Outcome, Size


def machine() -> str:
    cores = len(os.sched_getaffinity(0))
    try:
        mem = Path("/proc/meminfo").read_text().split()[1]
        memory = f"{int(mem) / 1024 / 1024:.1f} GiB RAM"
    except (OSError, IndexError, ValueError):
        memory = "RAM unknown"
    return f"{platform.machine()}, {cores} cores, {memory}, Python {platform.python_version()}, {platform.system()}"


def table(outcomes: Sequence[Outcome], size: Size) -> str:
    """One block per scenario: its figures, then each expectation with PASS/FAIL."""
    width = min(shutil.get_terminal_size((120, 20)).columns, 120)
    lines = [f"fluxrate chaos suite — size {size.name} (counts ÷ {size.divisor})", "=" * width]
    for number, o in enumerate(outcomes, 1):
        lines.append(f"{number}. {o.title:<{width - 22}} {'PASS' if o.passed else 'FAIL'}  {o.seconds:6.1f} s")
        key_width = max((len(k) for k in o.figures), default=0)
        for key, value in o.figures.items():
            lines.append(f"     {key:<{key_width}}  {value}")
        for expectation, held in o.checks.items():
            lines.append(f"   {'✔' if held else '✘'} {expectation}")
        if o.error:
            lines.append(f"   ✘ error: {o.error}")
        lines.append("-" * width)
    passed = sum(o.passed for o in outcomes)
    lines.append(f"{passed}/{len(outcomes)} scenarios met their expectations")
    return "\n".join(lines)


def record(outcomes: Sequence[Outcome], size: Size, started: str, seconds: float, seed: int) -> dict[str, Any]:
    return {"suite": "fluxrate chaos", "size": size.name, "divisor": size.divisor, "started": started,
            "seconds": round(seconds, 1), "seed": seed, "machine": machine(),
            "passed": all(o.passed for o in outcomes), "scenarios": [o.to_json() for o in outcomes]}


def write_json(data: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path
