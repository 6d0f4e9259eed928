"""``python -m fluxrate_sandbox.chaos``: run the scenarios, print the figures table, write the JSON record.

Each scenario gets a fresh stack (sandbox, operator process, receiver process) in its own state directory;
the secret-hygiene scenario searches the evidence all of them left.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from fluxrate_sandbox.chaos import finalization, hostile, money_back, reminders, renewal, storms, tenancy
from fluxrate_sandbox.chaos.hygiene import secret_hygiene
from fluxrate_sandbox.chaos.outcome import SIZES, Outcome, Size
from fluxrate_sandbox.chaos.report import record, table, write_json
from fluxrate_sandbox.chaos.stack import Evidence, Stack, chaos_stack

ScenarioFn = Callable[[Stack, Size, random.Random, Outcome], Awaitable[None]]


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    run: ScenarioFn
    timeout_s: float  # a hung scenario is reported as failed, not waited on forever


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("storm", "Webhook storm: every success event 3x, concurrent, shuffled", storms.webhook_storm, 600),
    Scenario("money-back", "Refunds and disputes after the storm: every event 3x, concurrent, half reversed",
             money_back.money_back, 600),
    Scenario("kube-outage", "Kubernetes API outage (10 s) in the middle of the storm", storms.kube_outage, 600),
    Scenario("stripe-faults", "Stripe API faults during finalization (20% 500, 10% 429, latency <= 2 s)",
             finalization.stripe_faults, 900),
    Scenario("operator-crash", "Operator SIGKILLed at random moments during finalization",
             finalization.operator_crash, 900),
    Scenario("link-renewal", "Failed bank debits renewed while the operator is SIGKILLed at random moments",
             renewal.link_renewal, 600),
    Scenario("reminders", "Due dates pass, reminders and receipts go out while the operator is SIGKILLed",
             reminders.reminders_under_kills, 600),
    Scenario("receiver-crash", "Receiver SIGKILLed mid-request, restarted", storms.receiver_crash, 600),
    Scenario("hostile", "Hostile input (hypothesis-generated requests)", hostile.hostile_input, 1200),
    Scenario("cross-tenant", "Cross-tenant signatures", tenancy.cross_tenant, 300),
    Scenario("replay", "Replay: old and repeated valid events", tenancy.replay, 300),
)
HYGIENE = ("secret-hygiene", "Secret hygiene: every secret searched in logs, Events, statuses, emails, metrics, "
           "answers")
KEYS = [s.key for s in SCENARIOS] + [HYGIENE[0]]


async def run_scenario(scenario: Scenario, size: Size, rng: random.Random, work_dir: Path,
                       evidence: Evidence, number: int) -> Outcome:
    outcome = Outcome(scenario.key, scenario.title)
    started = time.monotonic()
    try:
        async with asyncio.timeout(scenario.timeout_s):
            async with chaos_stack(work_dir / f"{number}-{scenario.key}", evidence) as stack:
                await scenario.run(stack, size, rng, outcome)
    except Exception as exc:  # reported in the table; the other scenarios still run
        outcome.error = f"{type(exc).__name__}: {exc}"[:1000]
        (work_dir / f"{number}-{scenario.key}.error.txt").write_text(traceback.format_exc())
    outcome.seconds = time.monotonic() - started
    return outcome


async def run_chaos(size: Size, work_dir: Path, *, only: list[str] | None = None, seed: int = 0,
                    progress: Callable[[Outcome], None] | None = None) -> list[Outcome]:
    rng = random.Random(seed)
    evidence = Evidence()
    outcomes: list[Outcome] = []
    for number, scenario in enumerate(SCENARIOS, 1):
        if only and scenario.key not in only:
            continue
        outcome = await run_scenario(scenario, size, rng, work_dir, evidence, number)
        outcomes.append(outcome)
        if progress:
            progress(outcome)
    if not only or HYGIENE[0] in only:
        outcome = Outcome(*HYGIENE)
        started = time.monotonic()
        secret_hygiene(evidence, len(outcomes), rng, outcome)
        outcome.seconds = time.monotonic() - started
        outcomes.append(outcome)
    return outcomes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fluxrate_sandbox.chaos", description=__doc__)
    parser.add_argument("--size", choices=sorted(SIZES), default="full",
                        help="full: the issue's counts; ci: counts divided by 5 (the run in make test)")
    parser.add_argument("--only", action="append", choices=KEYS, help="run only this scenario (repeatable)")
    parser.add_argument("--json", type=Path,
                        help="where to write the figures (default bench/results/chaos-<size>-<time>.json)")
    parser.add_argument("--work-dir", type=Path, help="state directories and process logs (default: a temp dir)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random, recorded in the JSON)")
    args = parser.parse_args(argv)
    size = SIZES[args.size]
    seed = args.seed if args.seed is not None else random.randrange(2**31)
    started = dt.datetime.now(dt.UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    json_path = args.json or Path("bench/results") / f"chaos-{size.name}-{stamp}.json"
    with tempfile.TemporaryDirectory(prefix="fluxrate-chaos-") as tmp:
        work_dir = args.work_dir or Path(tmp)
        work_dir.mkdir(parents=True, exist_ok=True)
        print(f"fluxrate chaos: size {size.name}, seed {seed}, work dir {work_dir}", flush=True)

        def progress(outcome: Outcome) -> None:
            print(f"  {outcome.scenario:<16} {'PASS' if outcome.passed else 'FAIL'}  {outcome.seconds:6.1f} s",
                  flush=True)

        clock = time.monotonic()
        outcomes = asyncio.run(run_chaos(size, work_dir, only=args.only, seed=seed, progress=progress))
        seconds = time.monotonic() - clock
    print(table(outcomes, size))
    path = write_json(record(outcomes, size, started.isoformat(timespec="seconds"), seconds, seed), json_path)
    print(f"figures written to {path}")
    return 0 if all(o.passed for o in outcomes) else 1
