"""fluxrate subcommands as separate processes wired to the sandbox, and waiting on what they do.

Shared by the demo and the chaos suite: one way to start, kill, restart and stop the operator and the receiver.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import random
import signal
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(RuntimeError):
    """A condition was not reached in time."""


_issued_ports: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_port() -> int:
    """A port nothing listens on, for a server started later, never handed out twice by this process.

    Taken below the kernel's ephemeral range when there is room: a port from ``bind(0)`` is free only until some
    process's next outgoing connection takes it as its local port, which made a receiver or an operator's probe
    fail to bind now and then under load ("address already in use")."""
    low, _ = _ephemeral_range()
    if low > 12000:
        for _ in range(200):
            port = random.randint(10000, low - 1)
            if port not in _issued_ports and _bindable(port):
                _issued_ports.add(port)
                return port
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _issued_ports:
            _issued_ports.add(port)
            return port


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


async def wait_for(what: str, probe: Callable[[], Awaitable[T] | T], check: Callable[[T], bool],
                   timeout: float = 30.0, interval: float = 0.1) -> T:
    """Poll ``probe`` (sync or async) until ``check`` holds; ``WaitTimeout`` names ``what`` and the last value."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = probe()
        if inspect.isawaitable(value):
            value = await value
        if check(value):  # type: ignore[arg-type]
            return value  # type: ignore[return-value]
        if asyncio.get_running_loop().time() > deadline:
            raise WaitTimeout(f"timed out waiting for {what}; last seen: {value!r}"[:2000])
        await asyncio.sleep(interval)


async def wait_http_ok(what: str, url: str, timeout: float = 60.0) -> None:
    """Poll ``url`` until it answers 200 (a process's /readyz), naming ``what`` when it does not in time."""
    import aiohttp

    async def status() -> int:
        try:
            async with aiohttp.ClientSession() as http, http.get(url) as answer:
                return answer.status
        except aiohttp.ClientError:
            return 0

    await wait_for(what, status, lambda code: code == 200, timeout=timeout)


class FluxrateProcess:
    """``python -m fluxrate <args>`` with ``env``; stdout and stderr appended to ``log_file`` across restarts."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_file: Path) -> None:
        self.name = name
        self.args = args
        self.env = env
        self.log_file = log_file
        self.starts = 0
        self.kills = 0
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self._proc is not None, f"{self.name} not started"
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def start(self) -> int:
        with self.log_file.open("ab" if self.starts else "wb") as log:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "fluxrate", *self.args, env={**os.environ, **self.env}, stdout=log, stderr=log,
            )
        self.starts += 1
        return self._proc.pid

    async def kill(self, sig: signal.Signals = signal.SIGKILL) -> None:
        """Send ``sig`` and wait for the process to end."""
        if self._proc is None or self._proc.returncode is not None:
            return
        self._proc.send_signal(sig)
        self.kills += sig == signal.SIGKILL
        await self._proc.wait()

    async def restart(self, sig: signal.Signals = signal.SIGKILL) -> int:
        await self.kill(sig)
        return await self.start()

    async def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds."""
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()


@contextlib.asynccontextmanager
async def process(name: str, args: list[str], env: dict[str, str], log_file: Path) -> AsyncIterator[FluxrateProcess]:
    """A fluxrate subcommand as its own process for the duration of the block; stopped with SIGTERM on exit."""
    proc = FluxrateProcess(name, args, env, log_file)
    await proc.start()
    try:
        yield proc
    finally:
        await proc.stop()
