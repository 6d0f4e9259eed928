"""Sampling profiles of the processes under load (py-spy, attached from outside: the target runs unmodified).

``python -m bench --profile`` attaches py-spy to the process under test for each cell and writes, per cell, the
raw collapsed stacks (``<cell>.folded``, for flame graphs) and the top functions by own and total time.
Profiling costs CPU on the same machine, so a profiled run's figures are not the recorded ones.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Any


def py_spy() -> str | None:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    return found if Path(found).exists() else None


class Profiles:
    """Attach py-spy to a pid for ``seconds``; ``summaries`` holds what each profiled cell spent its time on."""

    def __init__(self, out_dir: Path, seconds: float, rate: int = 200) -> None:
        self.out_dir = out_dir
        self.seconds = seconds
        self.rate = rate
        self.tasks: list[asyncio.Task[None]] = []
        self.summaries: dict[str, Any] = {}

    async def __call__(self, name: str, pid: int) -> None:
        binary = py_spy()
        if binary is None or not pid:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        out = self.out_dir / f"{name}.folded"
        proc = await asyncio.create_subprocess_exec(
            binary, "record", "--pid", str(pid), "--duration", str(int(self.seconds)), "--rate", str(self.rate),
            "--format", "raw", "--nonblocking", "--output", str(out),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)

        async def finish() -> None:
            await proc.wait()
            if out.exists():
                self.summaries[name] = {"file": str(out), **summarize(out.read_text())}

        self.tasks.append(asyncio.create_task(finish()))

    async def wait(self) -> None:
        await asyncio.gather(*self.tasks)


def _frame(frame: str) -> str:
    """``function (path/to/module.py:line)`` -> ``function (module.py)``."""
    name, _, where = frame.partition(" (")
    file = where.split(":")[0].rsplit("/", 1)[-1]
    return f"{name} ({file})" if file else name


def summarize(folded: str, top: int = 15) -> dict[str, Any]:
    """Top functions by own samples (the leaf) and by total samples (anywhere on the stack) from collapsed
    stacks; idle samples (the event loop waiting in ``select``) are counted apart."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = idle = 0
    for line in folded.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [_frame(f) for f in stack.split(";")]
        samples += count
        if frames[-1].startswith(("select (selectors.py)", "poll (selectors.py)", "run (uvloop")):
            idle += count
            continue
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    busy = max(samples - idle, 1)
    share = lambda n: round(100 * n / busy, 1)  # noqa: E731
    return {"samples": samples, "idle_samples": idle,
            "own_pct": [[f, share(n)] for f, n in own.most_common(top)],
            "total_pct": [[f, share(n)] for f, n in total.most_common(top * 2)]}
