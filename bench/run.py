"""``python -m bench``: issue 10's measures on the embedded sandbox; tables on stdout, JSON in bench/results/.

With the real control plane built (``make realkube``), the receiver ceiling's (c) and (d), webhook -> Paid and
link throughput are taken again with the real kube-apiserver in place of the emulator (``--kube``).

Traffic goes only to 127.0.0.1. Every loop is bounded in count and time; the full run takes a few minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.ceiling import QUICK_CEILING, CeilingSizes, bench_ceiling, bench_ceiling_real
from bench.links import bench_links
from bench.links_first import QUICK_LINKS_FIRST, LinksFirstSizes, bench_links_first
from bench.memory import QUICK_MEMORY, MemorySizes, bench_memory
from bench.profile import Profiles, py_spy
from bench.recovery import QUICK_RECOVERY, RecoverySizes, bench_recovery
from bench.report import RESULTS, machine, render, targets, write_json
from bench.shards import PER_INTEGRATION, QUICK_PER_INTEGRATION, bench_shards
from fluxrate.kube import Kube
from fluxrate_sandbox.real_kube import RealKubeUnavailable, realkube_binary, running_real_kube
from fluxrate_sandbox.stack import Sandbox, running_sandbox

SUITES = ("ceiling", "links", "memory", "shards", "recovery")
REAL_SUITES = ("ceiling", "links")  # memory and shards are the emulator's only
KUBES = ("emulator", "real", "both")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--name", default="bench", help="results file prefix (default: bench)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the bench runs, measures nothing")
    parser.add_argument("--only", default=",".join(SUITES), help=f"comma-separated subset of {','.join(SUITES)}")
    parser.add_argument("--invoices", type=int, default=None, help="invoices finalized at once (default 1000)")
    parser.add_argument("--profile", action="store_true",
                        help="attach py-spy to each process under test; writes collapsed stacks and top functions")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    parser.add_argument("--keep-state", action="store_true", help="keep the sandbox state and process logs")
    parser.add_argument("--kube", choices=KUBES, default=None,
                        help="which API server: the emulator, the real kube-apiserver (ceiling and links only), or "
                             "both (default: both when the realkube binary is built, else the emulator)")
    return parser.parse_args(argv)


def kube_choice(requested: str | None) -> tuple[set[str], str | None]:
    """The API servers to measure, and why the real one is skipped (None when it is not)."""
    try:
        realkube_binary()
    except RealKubeUnavailable as exc:
        if requested in ("real", "both"):
            raise SystemExit(f"--kube {requested}: {exc}") from None
        return {"emulator"}, str(exc)
    if requested in (None, "both"):
        return {"emulator", "real"}, None
    return {requested}, "--kube emulator" if requested == "emulator" else None


def _log_to_file(path: Path) -> None:
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


async def run(args: argparse.Namespace, state_dir: Path) -> dict[str, Any]:
    suites = [s for s in args.only.split(",") if s]
    unknown = set(suites) - set(SUITES)
    if unknown:
        raise SystemExit(f"unknown suites: {', '.join(sorted(unknown))}")
    if args.profile and py_spy() is None:
        raise SystemExit("--profile needs py-spy: make bench installs it (pip install -e '.[bench]')")
    kubes, skipped = kube_choice(args.kube)
    if skipped and "real" not in kubes:
        print(f"real kube-apiserver figures skipped: {skipped}", flush=True)
    invoices = args.invoices or (6 if args.quick else 1000)
    profiles = Profiles(args.results_dir / f"profiles-{args.name}", seconds=2 if args.quick else 6) \
        if args.profile else None
    started = time.perf_counter()
    data: dict[str, Any] = {"name": args.name, "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                            "machine": machine(), "quick": args.quick, "profiled": args.profile, "suites": {}}
    async with running_sandbox(state_dir, public_base_url="http://127.0.0.1:9") as sandbox:
        if "emulator" in kubes:
            os.environ["KUBECONFIG"] = str(sandbox.kube.kubeconfig)
            kube = await Kube.connect()
            try:
                if "ceiling" in suites:
                    sizes = QUICK_CEILING if args.quick else CeilingSizes()
                    data["suites"]["ceiling"] = await bench_ceiling(sandbox, kube, state_dir, sizes, profiles)
                    data["suites"]["ceiling"]["receiver_cost"] = await receiver_cost(2000 if args.quick else 20_000)
                if "links" in suites:
                    data["suites"]["links"] = await bench_links(sandbox, kube, state_dir, invoices, profiler=profiles)
                    data["suites"]["links"]["with_open"] = await bench_links_first(
                        sandbox, kube, state_dir, invoices, data["suites"]["links"],
                        QUICK_LINKS_FIRST if args.quick else LinksFirstSizes())
                if "memory" in suites:
                    data["suites"]["memory"] = await bench_memory(sandbox, kube, state_dir,
                                                                  QUICK_MEMORY if args.quick else MemorySizes())
                if "shards" in suites:
                    data["suites"]["shards"] = await bench_shards(
                        sandbox, kube, state_dir, QUICK_PER_INTEGRATION if args.quick else PER_INTEGRATION)
                if "recovery" in suites:  # issue 18, Build 1
                    data["suites"]["recovery"] = await bench_recovery(
                        sandbox, kube, state_dir, QUICK_RECOVERY if args.quick else RecoverySizes())
            finally:
                await kube.close()
        if "real" in kubes and set(suites) & set(REAL_SUITES):
            data["real_kube"] = await run_real(args, sandbox, state_dir, suites, invoices, profiles)
        elif skipped:
            data["real_kube"] = {"skipped": skipped}
    if profiles is not None:
        await profiles.wait()
        data["profiles"] = profiles.summaries
    data["targets"] = targets(data)
    data["duration_s"] = round(time.perf_counter() - started, 1)
    return data


async def run_real(args: argparse.Namespace, sandbox: Sandbox, state_dir: Path, suites: list[str], invoices: int,
                   profiles: Profiles | None) -> dict[str, Any]:
    """The ceiling's (c), (d), webhook -> Paid, and link throughput with the real kube-apiserver (the sandbox still
    serves Stripe and SMTP). Started after the emulator's measures, so it does not share the cores with them."""
    out: dict[str, Any] = {"server": "kube-apiserver, etcd, kube-controller-manager (k8s.io/kubernetes v1.34.4, "
                                     "fluxrate_sandbox.real_kube)", "suites": {}}
    started = time.perf_counter()
    async with running_real_kube(state_dir / "realkube") as real:
        out["start_s"] = round(time.perf_counter() - started, 1)
        os.environ["KUBECONFIG"] = str(real.kubeconfig)
        kube = await Kube.connect()
        try:
            if "ceiling" in suites:
                sizes = QUICK_CEILING if args.quick else CeilingSizes()
                out["suites"]["ceiling"] = await bench_ceiling_real(sandbox, real, kube, state_dir, sizes, profiles)
            if "links" in suites:
                out["suites"]["links"] = await bench_links(sandbox, kube, state_dir, invoices, profiler=profiles,
                                                           real=real)
        finally:
            await kube.close()
            os.environ["KUBECONFIG"] = str(sandbox.kube.kubeconfig)
    return out


async def receiver_cost(count: int) -> dict[str, Any]:
    """``bench.receiver_cost`` in its own process (it configures the receiver's logging, not the bench's)."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bench.receiver_cost", "--json", str(count),
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"bench.receiver_cost failed: {err.decode()[-2000:]}")
    return dict(json.loads(out))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    state_dir = Path(tempfile.mkdtemp(prefix="fluxrate-bench-"))
    _log_to_file(state_dir / "bench.log")
    try:
        data = asyncio.run(run(args, state_dir))
    finally:
        if args.keep_state:
            print(f"state and logs kept in {state_dir}")
        else:
            shutil.rmtree(state_dir, ignore_errors=True)
    print(render(data))
    path = write_json(args.name, data, args.results_dir)
    print(f"\nJSON: {path}")
    return 0
