"""The processes a benchmark measures and drives: the receiver (``python -m fluxrate receiver``), the bare aiohttp
baseline (``python -m bench.bare_app``), and the load generator (``python -m bench.loadgen``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp

from bench.loadgen import TOKEN_ENV
from fluxrate_sandbox.processes import free_port, process, wait_for
from fluxrate_sandbox.stack import Sandbox

ROOT = Path(__file__).resolve().parents[1]


@contextlib.asynccontextmanager
async def receiver_process(sandbox: Sandbox, state_dir: Path, name: str = "receiver",
                           kube_env: dict[str, str] | None = None) -> AsyncIterator[tuple[str, int]]:
    """The receiver as in production (INFO: one log line per delivery). Yields (base URL, pid).

    ``kube_env`` (``RealKube.env()``) points it at another API server than the sandbox's emulator."""
    port = free_port()
    env = {**sandbox.env(), **(kube_env or {}), "FLUXRATE_RECEIVER_HOST": "127.0.0.1",
           "FLUXRATE_RECEIVER_PORT": str(port), "FLUXRATE_RECEIVER_LOG_LEVEL": "INFO"}
    async with process(name, ["receiver"], env, state_dir / f"{name}.log") as proc:
        base = f"http://127.0.0.1:{port}"
        await wait_for(f"the {name} to be ready", lambda: _ready(base), lambda status: status == 200)
        yield base, proc.pid


@contextlib.asynccontextmanager
async def bare_app_process(state_dir: Path) -> AsyncIterator[tuple[str, int]]:
    port = free_port()
    with (state_dir / "bare_app.log").open("wb") as log:
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bench.bare_app", str(port), cwd=ROOT,
                                                    stdout=log, stderr=log)
    try:
        base = f"http://127.0.0.1:{port}"
        await wait_for("the bare aiohttp app", lambda: _ready(base), lambda status: status == 200)
        yield base, proc.pid
    finally:
        proc.terminate()
        await proc.wait()


async def _ready(base: str) -> int:
    try:
        async with aiohttp.ClientSession() as http, http.get(f"{base}/readyz") as answer:
            return answer.status
    except aiohttp.ClientError:
        return 0


async def generate(url: str, requests: Sequence[dict[str, Any]], work_dir: Path, *, concurrency: int = 1,
                   rate: float | None = None, duration: float = 10.0, count: int | None = None,
                   token: str | None = None,
                   on_start: Any = None) -> dict[str, Any]:
    """Run the load generator as its own process and return its result (see ``bench.loadgen``).

    ``on_start(pid)``, when given, is called once the generator runs (to attach a profiler to the target)."""
    await asyncio.to_thread(work_dir.mkdir, parents=True, exist_ok=True)
    requests_file, out = work_dir / "requests.jsonl", work_dir / "result.json"
    await asyncio.to_thread(requests_file.write_text, "".join(json.dumps(r) + "\n" for r in requests))
    args = [sys.executable, "-m", "bench.loadgen", url, str(requests_file), str(out),
            "--concurrency", str(concurrency), "--duration", str(duration)]
    if rate:
        args += ["--rate", str(rate)]
    if count:
        args += ["--count", str(count)]
    env = {**os.environ, TOKEN_ENV: token} if token else None  # not argv: ps shows it (and it may start with "-")
    proc = await asyncio.create_subprocess_exec(*args, cwd=ROOT, env=env, stderr=asyncio.subprocess.PIPE)
    if on_start is not None:
        await on_start(proc.pid)
    _, stderr = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"the load generator failed: {stderr.decode()[-2000:]}")
    return json.loads(await asyncio.to_thread(out.read_text))
