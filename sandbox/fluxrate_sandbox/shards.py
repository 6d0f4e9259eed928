"""Sharded operators on the sandbox: N ``fluxrate operator`` processes, each told its shard as the chart tells it
(FLUXRATE_SHARD_INDEX, FLUXRATE_SHARD_COUNT), and a reshard the way ``helm upgrade`` rolls the Deployments.

Shared by the sharding test (3 shards, then 3 -> 4 under load) and the sharding bench.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from fluxrate.operator.sharding import shard_of
from fluxrate_sandbox.processes import FluxrateProcess


def namespaces_covering(counts: Iterable[int], per_shard: int = 1, prefix: str = "tenant") -> list[str]:
    """The first ``prefix-<i>`` namespaces that give every shard of every count in ``counts`` at least
    ``per_shard`` namespaces (a name is taken when some shard it would land on still lacks one)."""
    counts = list(counts)
    chosen: list[str] = []

    def lacking(count: int, shard: int) -> bool:
        return sum(shard_of(c, count) == shard for c in chosen) < per_shard

    for i in itertools.count():
        if not any(lacking(n, s) for n in counts for s in range(n)):
            return chosen
        name = f"{prefix}-{i}"
        if any(lacking(n, shard_of(name, n)) for n in counts):
            chosen.append(name)
    raise AssertionError("unreachable")


def exactly_per_shard(count: int, prefix: str = "tenant") -> list[str]:
    """One namespace per shard of ``count``, in shard order: ``result[s]`` is shard ``s``'s."""
    found: dict[int, str] = {}
    for i in itertools.count():
        found.setdefault(shard_of(f"{prefix}-{i}", count), f"{prefix}-{i}")
        if len(found) == count:
            return [found[s] for s in range(count)]
    raise AssertionError("unreachable")


@dataclass
class ShardedOperators:
    """The operator processes of one shard count; ``roll_to`` reshards one Deployment at a time (Recreate)."""

    env: dict[str, str]
    state_dir: Path
    count: int = 0
    processes: list[FluxrateProcess] = field(default_factory=list)
    history: list[FluxrateProcess] = field(default_factory=list)  # every process ever started, for the logs

    def _process(self, index: int, count: int) -> FluxrateProcess:
        env = {**self.env, "FLUXRATE_METRICS_PORT": "0"}  # several on one machine: no shared port
        if count > 1:
            env |= {"FLUXRATE_SHARD_INDEX": str(index), "FLUXRATE_SHARD_COUNT": str(count)}
        log = self.state_dir / f"operator-{count}-shard-{index}.{len(self.history)}.log"
        proc = FluxrateProcess(f"operator {index}/{count}", ["operator"], env, log)
        self.history.append(proc)
        return proc

    async def start(self, count: int) -> None:
        self.count = count
        self.processes = [self._process(i, count) for i in range(count)]
        for proc in self.processes:
            await proc.start()

    async def roll_to(self, count: int, pause: float = 0.0) -> None:
        """What ``helm upgrade --set operator.shards=<count>`` does: each existing shard's Deployment is recreated
        with the new count (its pod stopped, then started), one after the other, then the new shards start (or the
        surplus ones stop). Old and new shards overlap while it runs."""
        old, self.processes = self.processes, []
        for index in range(count):
            if index < len(old):
                await old[index].stop()
            proc = self._process(index, count)
            await proc.start()
            self.processes.append(proc)
            if pause:
                await asyncio.sleep(pause)
        for proc in old[count:]:
            await proc.stop()
        self.count = count

    async def replace(self, count: int, sig: signal.Signals = signal.SIGKILL) -> None:
        """Every shard killed with ``sig`` at once, then ``count`` new ones started (``kubectl delete`` the old
        Deployments, install the new)."""
        await asyncio.gather(*(proc.kill(sig) for proc in self.processes))
        await self.start(count)

    async def stop(self) -> None:
        await asyncio.gather(*(proc.stop() for proc in self.processes))

    def logs(self) -> dict[str, str]:
        return {proc.log_file.name: proc.log_file.read_text(errors="replace")
                for proc in self.history if proc.log_file.exists()}
