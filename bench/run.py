"""``python -m bench``: every benchmark against the embedded sandbox, tables on stdout, JSON in bench/results/.

Traffic goes only to 127.0.0.1. Every loop is bounded in count and time; the full run takes a few minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.kube_bench import KubeSizes, bench_kube
from bench.memory_bounds import measure_bounds
from bench.operator_bench import bench_operator
from bench.receiver_bench import ReceiverSizes, bench_receiver
from bench.report import RESULTS, machine, render, write_json
from fluxrate.kube import Kube
from fluxrate.sandbox.stack import running_sandbox

SUITES = ("kube", "receiver", "memory", "operator")
QUICK_RECEIVER = ReceiverSizes(per_cell=12, applied_per_cell=6, concurrencies=(1, 4), cell_budget_s=5,
                               soak_rounds=2, soak_per_round=30)
QUICK_KUBE = KubeSizes(writes=10, lists=3, concurrencies=(1, 4))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--name", default="bench", help="results file prefix (default: bench)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the bench runs, measures nothing")
    parser.add_argument("--only", default=",".join(SUITES), help=f"comma-separated subset of {','.join(SUITES)}")
    parser.add_argument("--receiver-modes", default="inprocess,process",
                        help="inprocess (running_receiver in this loop) and/or process (python -m fluxrate receiver)")
    parser.add_argument("--operator-invoices", default=None,
                        help="invoice counts, comma-separated (default 50,200; --quick: 3); then 4 bursts of 100")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    parser.add_argument("--keep-state", action="store_true", help="keep the sandbox state and process logs")
    return parser.parse_args(argv)


def _log_to_file(path: Path) -> None:
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)  # the receiver's production level: one line per delivery


async def run(args: argparse.Namespace, state_dir: Path) -> dict[str, Any]:
    suites = [s for s in args.only.split(",") if s]
    unknown = set(suites) - set(SUITES)
    if unknown:
        raise SystemExit(f"unknown suites: {', '.join(sorted(unknown))}")
    counts = [int(n) for n in (args.operator_invoices or ("3" if args.quick else "50,200")).split(",")]
    growth = (2, 2) if args.quick else (100, 4)  # (invoices per burst, bursts)
    started = time.perf_counter()
    data: dict[str, Any] = {"name": args.name, "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                            "machine": machine(), "quick": args.quick, "suites": {}}
    async with running_sandbox(state_dir, public_base_url="http://127.0.0.1:9") as sandbox:
        os.environ["KUBECONFIG"] = str(sandbox.kube.kubeconfig)
        kube = await Kube.connect()
        try:
            if "kube" in suites:
                data["suites"]["kube"] = await bench_kube(kube, QUICK_KUBE if args.quick else KubeSizes())
            if "receiver" in suites:
                sizes = QUICK_RECEIVER if args.quick else ReceiverSizes()
                data["suites"]["receiver"] = [await bench_receiver(mode, sandbox, kube, sizes, state_dir)
                                              for mode in args.receiver_modes.split(",") if mode]
            if "memory" in suites:
                data["suites"]["memory_bounds"] = measure_bounds()
            if "operator" in suites:
                settle = 0.2 if args.quick else 3.0
                runs = [await bench_operator(n, sandbox, kube, state_dir, settle=settle) for n in counts]
                if growth:  # the same total in equal bursts, one operator: RSS against invoices held
                    runs.append(await bench_operator(growth[0] * growth[1], sandbox, kube, state_dir,
                                                     batches=growth[1], settle=settle))
                data["suites"]["operator"] = runs
        finally:
            await kube.close()
    data["duration_s"] = round(time.perf_counter() - started, 1)
    return data


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
