"""Memory at scale (issue 10, measure 4): the operator resuming 10,000 invoices, the receiver after 100,000
deliveries, and the receiver's bounded structures (``bench.memory_bounds``).

Operator: the real operator (its own process) takes a few invoices to Open (payment link, email) and some of those
to Paid (the stand-in's ``pay()``, then the receiver's code path ``apply_report``; the operator deactivates the
link). Those objects, exactly as the operator left them (kopf's annotations, finalizer, spec, status), are then
cloned into the emulator directly, and a fresh operator resumes them: RSS, CPU, requests, and that it did nothing
it should not (no link created, no email, no Paid invoice changed).

Receiver: its own process, driven by the load generator process with a mix of applied payments, their duplicates,
ignored and unmatched events and forged signatures, signed just before each step is sent; RSS after each step.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.links import examples
from bench.memory_bounds import measure_bounds
from bench.proc import cpu_seconds, peak_rss_mib, rss_mib
from bench.servers import generate, receiver_process
from bench.tenant import Tenant, create_tenant, seed_open_invoices
from bench.watch import is_open
from bench.webhook_load import Delivery, as_requests, deliveries, forged, ignored_event, paid_session_event, sign
from fluxrate import API_GROUP, API_VERSION, WEBHOOK_PATH_PREFIX
from fluxrate.kube import Kube
from fluxrate.payments import apply_report, report_from_object
from fluxrate.webhook_receiver.settings import ReceiverSettings
from fluxrate_sandbox.demo.flow import apply, condition
from fluxrate_sandbox.processes import WaitTimeout, process, wait_for
from fluxrate_sandbox.stack import Sandbox

API = f"{API_GROUP}/{API_VERSION}"
OPERATOR_TARGET_MIB = 250.0
RESUMED = "Resuming is processed"  # kopf logs it once per object it resumed (INFO)


@dataclass(frozen=True)
class MemorySizes:
    invoices: int = 10_000  # held by the operator when it resumes (samples included)
    open_invoices: int = 1_000  # of which Open (each has a reconciliation timer); the rest Paid
    all_open_invoices: int = 2_000  # then a fresh operator resumes this many invoices, all Open (0: skip)
    samples: int = 3  # invoices the real operator takes to Open
    paid_samples: int = 2  # of which paid
    settle_window_s: float = 4.0  # the operator is idle when it used under idle_cpu_share of a core this long
    idle_cpu_share: float = 0.05
    resume_timeout_s: float = 90.0
    deliveries: int = 100_000  # to the receiver
    step: int = 20_000  # RSS after each step
    applied_share: float = 0.01  # of each step: applied payments (fresh Open invoices)
    duplicate_share: float = 0.09  # redeliveries of those
    forged_share: float = 0.45  # the rest: ignored and unmatched
    concurrency: int = 8
    step_timeout_s: float = 60.0


QUICK_MEMORY = MemorySizes(invoices=24, open_invoices=4, all_open_invoices=24, samples=2, paid_samples=1,
                           settle_window_s=0.6, idle_cpu_share=0.2, resume_timeout_s=20.0, deliveries=200, step=100,
                           applied_share=0.05, duplicate_share=0.1, concurrency=4, step_timeout_s=15.0)


# --- helpers -------------------------------------------------------------------------------------------------


async def until_idle(pid: int, window_s: float, cpu_share: float, timeout_s: float,
                     interval: float = 0.25) -> dict[str, Any]:
    """Wait until ``pid`` used under ``cpu_share`` of a core over the last ``window_s``; bounded by ``timeout_s``.

    ``busy_s`` is when the quiet window began (from the call); ``waited_s`` when it was seen to be quiet."""
    started = time.perf_counter()
    samples: list[tuple[float, float]] = []
    while True:
        now, cpu = time.perf_counter() - started, cpu_seconds(pid)
        if cpu is None:
            raise RuntimeError(f"process {pid} is gone")
        samples.append((now, cpu))
        begun = [s for s in samples if s[0] <= now - window_s]
        if begun and cpu - begun[-1][1] <= cpu_share * (now - begun[-1][0]):
            return {"idle": True, "busy_s": round(begun[-1][0], 2), "waited_s": round(now, 2)}
        if now > timeout_s:
            return {"idle": False, "busy_s": None, "waited_s": round(now, 2)}
        await asyncio.sleep(interval)


class LogCounter:
    """Counts lines containing ``needle`` in a growing log file, reading only what was appended."""

    def __init__(self, path: Path, needle: str) -> None:
        self.path, self.needle = path, needle.encode()
        self.offset, self.count, self._rest = 0, 0, b""

    def __call__(self) -> int:
        try:
            with self.path.open("rb") as log:
                log.seek(self.offset)
                chunk = log.read()
        except FileNotFoundError:
            return 0
        self.offset += len(chunk)
        lines = (self._rest + chunk).split(b"\n")
        self._rest = lines.pop()
        self.count += sum(self.needle in line for line in lines)
        return self.count


def _invoices(sandbox: Sandbox, namespace: str) -> list[dict[str, Any]]:
    return sandbox.kube.emulator.list_objects(API, "invoices", namespace)


def _phases(sandbox: Sandbox, namespace: str) -> Counter[str]:
    return Counter((o.get("status") or {}).get("phase") or "" for o in _invoices(sandbox, namespace))


def _open_emailed(obj: dict[str, Any] | None) -> bool:
    return obj is not None and is_open(obj) and bool(((obj.get("status") or {}).get("notification") or {}).get(
        "sentAt"))


def _paid_deactivated(obj: dict[str, Any] | None) -> bool:
    status = (obj or {}).get("status") or {}
    return status.get("phase") == "Paid" and (status.get("paymentLink") or {}).get("active") is False


# --- operator: the sample the real operator processes ------------------------------------------------------


async def _set_up(kube: Kube, namespaces: Sequence[str], stripe_key: str) -> tuple[str, dict[str, Any]]:
    """The examples' Secret and StripeIntegration in each namespace; returns (integration name, invoice template)."""
    template: dict[str, Any] = {}
    name = ""
    for namespace in namespaces:
        setup, template = examples(stripe_key)
        for doc in setup:
            await apply(kube, namespace, copy.deepcopy(doc))
        name = next(d["metadata"]["name"] for d in setup if d["kind"] == "StripeIntegration")
    return name, template


async def _pay(sandbox: Sandbox, kube: Kube, namespace: str, integration: str, invoice: dict[str, Any]) -> str:
    """The customer pays the link; the payment is recorded as the receiver records it (the public URL of this
    bench's sandbox reaches no receiver). Returns the outcome."""
    paid = await sandbox.stripe.pay(invoice["status"]["paymentLink"]["id"])
    event = next(e for e in paid.events if e["type"] == "checkout.session.completed")
    report = report_from_object(event["type"], event["data"]["object"], event_id=event["id"], livemode=False)
    assert report is not None
    decision, _ = await apply_report(kube, namespace, report, integration=integration)
    return decision.outcome


async def _samples(sandbox: Sandbox, kube: Kube, namespace: str, integration: str, template: dict[str, Any],
                   sizes: MemorySizes) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The running operator takes ``samples`` invoices to Open and ``paid_samples`` of them to Paid.
    Returns (Open, Paid) as the operator left them."""
    names = [f"sample-{i:02d}" for i in range(sizes.samples)]
    for name in names:
        doc = copy.deepcopy(template)
        doc["metadata"] = {"name": name, "namespace": namespace}
        await apply(kube, namespace, doc)
    for name in names:
        await wait_for(f"{name} to be Open and emailed", lambda n=name: kube.get_object("invoices", namespace, n),
                       _open_emailed, timeout=30)
    for name in names[:sizes.paid_samples]:
        obj = await kube.get_object("invoices", namespace, name)
        outcome = await _pay(sandbox, kube, namespace, integration, obj or {})
        if outcome != "applied":
            raise RuntimeError(f"paying {name}: {outcome}")
        await wait_for(f"{name} to be Paid with its link deactivated",
                       lambda n=name: kube.get_object("invoices", namespace, n), _paid_deactivated, timeout=30)
    objs = [sandbox.kube.emulator.get_object(API, "invoices", namespace, n) or {} for n in names]
    return objs[sizes.paid_samples:], objs[:sizes.paid_samples]


# --- operator: cloning and resuming --------------------------------------------------------------------------


def _clone(sandbox: Sandbox, source: dict[str, Any], namespace: str, name: str) -> None:
    """``source`` as a new object (the emulator assigns uid, resourceVersion, creationTimestamp)."""
    meta = source["metadata"]
    kept = {k: copy.deepcopy(meta[k]) for k in ("labels", "annotations", "finalizers") if meta.get(k)}
    emulator = sandbox.kube.emulator
    emulator.create_object({"apiVersion": API, "kind": "Invoice", "metadata": {**kept, "name": name,
                            "namespace": namespace}, "spec": copy.deepcopy(source["spec"])})
    emulator.patch_object(API, "invoices", namespace, name, {"status": copy.deepcopy(source["status"])},
                          subresource="status")


def _clone_many(sandbox: Sandbox, namespace: str, mix: Sequence[tuple[dict[str, Any], int]], prefix: str) -> float:
    """Clone each source ``count`` times, shuffled over the names (a fixed seed); returns seconds taken."""
    started = time.perf_counter()
    order = [src for src, count in mix for _ in range(count)]
    random.Random(10).shuffle(order)
    for index, source in enumerate(order):  # each validated by the emulator like any create
        _clone(sandbox, source, namespace, f"{prefix}-{index:05d}")
    return round(time.perf_counter() - started, 2)


def _resource_versions(sandbox: Sandbox, namespace: str) -> dict[str, str]:
    return {o["metadata"]["name"]: o["metadata"]["resourceVersion"] for o in _invoices(sandbox, namespace)}


async def _resume(sandbox: Sandbox, namespace: str, sizes: MemorySizes, state_dir: Path,
                  label: str) -> dict[str, Any]:
    """A fresh operator over ``namespace``: RSS, CPU and requests until it is idle, and what it changed."""
    stripe_links = sum(sandbox.stripe.links_created_by_invoice.values())
    emails, stripe_before = len(sandbox.smtp.messages), Counter(sandbox.stripe.request_counts)
    kube_before, phases_before = sandbox.kube.emulator.request_count, _phases(sandbox, namespace)
    versions = _resource_versions(sandbox, namespace)
    env = {**sandbox.env(), "FLUXRATE_LOG_LEVEL": "INFO", "FLUXRATE_WATCH_NAMESPACES": namespace}
    log_file = state_dir / f"memory-operator-{label}.log"
    resumed = LogCounter(log_file, RESUMED)
    async with process("operator", ["operator"], env, log_file) as operator:
        started = time.perf_counter()
        wanted = sum(phases_before.values()) + 1  # the invoices and the integration
        with contextlib.suppress(WaitTimeout):
            await wait_for("the operator to resume every object", resumed, lambda n: n >= wanted,
                           timeout=sizes.resume_timeout_s, interval=0.25)
        resumed_s = time.perf_counter() - started
        done = resumed.count >= wanted
        idle = (await until_idle(operator.pid, sizes.settle_window_s, sizes.idle_cpu_share, sizes.resume_timeout_s)
                if done else {"idle": False, "busy_s": None})
        rss, peak, cpu = rss_mib(operator.pid), peak_rss_mib(operator.pid), cpu_seconds(operator.pid)
        kube_requests = sandbox.kube.emulator.request_count - kube_before
        stripe = Counter(sandbox.stripe.request_counts) - stripe_before
    after = _resource_versions(sandbox, namespace)
    phases_after = _phases(sandbox, namespace)
    return {
        "invoices": sum(phases_before.values()),
        "phases_before": dict(phases_before),
        "phases_after": dict(phases_after),
        "idle": idle["idle"],
        "objects_resumed": resumed.count,  # kopf's "Resuming is processed" lines (invoices and the integration)
        "resumed_s": round(resumed_s, 2) if done else None,  # from the process start until kopf logged every resume
        "settle_s": round(resumed_s + idle["busy_s"], 2) if idle["idle"] else None,  # until its quiet window began
        "rss_mib": rss,
        "peak_rss_mib": peak,
        "under_target": rss is not None and peak is not None and peak < OPERATOR_TARGET_MIB,
        "operator_cpu_s": round(cpu or 0.0, 2),  # start-up included
        "kube_requests": kube_requests,  # by the operator (nothing else runs meanwhile)
        "stripe_requests": sum(stripe.values()),
        "stripe_requests_by_kind": {f"{m} {p} {s}": n for (m, p, s), n in stripe.most_common()},
        "payment_links_created": sum(sandbox.stripe.links_created_by_invoice.values()) - stripe_links,
        "emails_sent": len(sandbox.smtp.messages) - emails,
        "paid_phase_changed": phases_before.get("Paid", 0) - phases_after.get("Paid", 0),
        "invoices_written": sum(1 for n, rv in versions.items() if after.get(n) != rv),
    }


async def bench_operator_memory(sandbox: Sandbox, kube: Kube, state_dir: Path, sizes: MemorySizes) -> dict[str, Any]:
    mixed, all_open = "bench-mem-mixed", "bench-mem-open"
    namespaces = [mixed, all_open] if sizes.all_open_invoices else [mixed]
    _, key = sandbox.stripe.add_account()
    integration, template = await _set_up(kube, namespaces, key)
    env = {**sandbox.env(), "FLUXRATE_LOG_LEVEL": "INFO", "FLUXRATE_WATCH_NAMESPACES": ",".join(namespaces)}
    async with process("operator", ["operator"], env, state_dir / "memory-operator-sample.log") as operator:
        for namespace in namespaces:
            await wait_for("the integration to be Ready",
                           lambda ns=namespace: kube.get_object("stripeintegrations", ns, integration),
                           lambda o: (condition(o, "Ready") or {}).get("status") == "True", timeout=60)
        await until_idle(operator.pid, sizes.settle_window_s, sizes.idle_cpu_share, sizes.resume_timeout_s)
        rss_idle = rss_mib(operator.pid)
        opened, paid = await _samples(sandbox, kube, mixed, integration, template, sizes)
        rss_samples = rss_mib(operator.pid)
    paid_clones = sizes.invoices - sizes.open_invoices - len(paid)
    open_clones = sizes.open_invoices - len(opened)
    mix = [(paid[i % len(paid)], paid_clones // len(paid) + (i < paid_clones % len(paid))) for i in range(len(paid))]
    mix += [(opened[i % len(opened)], open_clones // len(opened) + (i < open_clones % len(opened)))
            for i in range(len(opened))]
    result: dict[str, Any] = {
        "target_mib": OPERATOR_TARGET_MIB,
        "rss_mib_idle": rss_idle,  # integration connected, no invoices
        "rss_mib_after_samples": rss_samples,
        "samples": {"open": len(opened), "paid": len(paid)},
        "mixed": {"mix": {"Paid": sizes.invoices - sizes.open_invoices, "Open": sizes.open_invoices},
                  "clone_s": _clone_many(sandbox, mixed, mix, "inv")},
    }
    result["mixed"].update(await _resume(sandbox, mixed, sizes, state_dir, "mixed"))
    if sizes.all_open_invoices:
        clone_s = _clone_many(sandbox, all_open, [(opened[0], sizes.all_open_invoices)], "inv")
        result["all_open"] = {"mix": {"Open": sizes.all_open_invoices}, "clone_s": clone_s,
                              **await _resume(sandbox, all_open, sizes, state_dir, "all-open")}
    return result


# --- receiver --------------------------------------------------------------------------------------------------


def _step_requests(tenant: Tenant, path: str, applied_bodies: Sequence[str], count: int,
                   sizes: MemorySizes) -> list[dict[str, Any]]:
    """Duplicates of earlier applied events (signed afresh, as Stripe does on a retry), forged, ignored and
    unmatched, interleaved; ``count`` in all."""
    dupes = round(count * sizes.duplicate_share / (1 - sizes.applied_share)) if applied_bodies else 0
    n_forged = round(count * sizes.forged_share)
    n_ignored = count - dupes - n_forged
    secret = tenant.signing_secret
    groups: list[list[Delivery]] = [
        [Delivery(b, sign(b, secret), "duplicate") for b in (applied_bodies[i % len(applied_bodies)]
                                                             for i in range(dupes))],
        forged(n_forged),
        deliveries([ignored_event(i) for i in range(n_ignored)], secret, ("ignored", "unmatched")),
    ]
    mixed: list[Delivery] = []
    longest = max(len(g) for g in groups)
    for i in range(longest):
        mixed.extend(g[i] for g in groups if i < len(g))
    return as_requests(path, mixed)


def _outcomes(result: dict[str, Any]) -> dict[str, Any]:
    return {k: result[k] for k in ("count", "per_s", "p50_ms", "p99_ms", "outcomes", "unexpected")}


async def bench_receiver_memory(sandbox: Sandbox, kube: Kube, state_dir: Path, sizes: MemorySizes
                                ) -> dict[str, Any]:
    _, key = sandbox.stripe.add_account()
    tenant = await create_tenant(kube, "bench-mem-rx", key)
    path = f"{WEBHOOK_PATH_PREFIX}/{tenant.namespace}/{tenant.integration}"
    steps = -(-sizes.deliveries // sizes.step)
    applied_per_step = max(1, round(sizes.step * sizes.applied_share))
    work = state_dir / "memory-loadgen"
    rows: list[dict[str, Any]] = []
    async with receiver_process(sandbox, state_dir, "memory-receiver") as (base, pid):
        rss_start = rss_mib(pid)
        for step in range(steps):
            size = min(sizes.step, sizes.deliveries - step * sizes.step)
            invoices = seed_open_invoices(sandbox, tenant, f"mem-s{step}", applied_per_step)
            applied = deliveries([paid_session_event(inv) for inv in invoices], tenant.signing_secret, "applied")
            first = await generate(base, as_requests(path, applied), work, concurrency=sizes.concurrency,
                                   duration=sizes.step_timeout_s)
            rest = _step_requests(tenant, path, [d.body for d in applied], size - len(applied), sizes)
            second = await generate(base, rest, work, concurrency=sizes.concurrency, duration=sizes.step_timeout_s)
            rows.append({"deliveries": (rows[-1]["deliveries"] if rows else 0) + first["count"] + second["count"],
                         "rss_mib": rss_mib(pid), "applied": _outcomes(first), "mixed": _outcomes(second)})
        peak = peak_rss_mib(pid)
    outcomes: Counter[str] = Counter()
    for row in rows:
        outcomes.update(row["applied"]["outcomes"])
        outcomes.update(row["mixed"]["outcomes"])
    return {
        "deliveries": rows[-1]["deliveries"] if rows else 0,
        "rss_mib_start": rss_start,
        "rss_mib_after_each_step": [{"deliveries": r["deliveries"], "rss_mib": r["rss_mib"]} for r in rows],
        "rss_mib_end": rows[-1]["rss_mib"] if rows else rss_start,
        "peak_rss_mib": peak,
        "outcomes": dict(outcomes),
        "unexpected": sum(r["applied"]["unexpected"] + r["mixed"]["unexpected"] for r in rows),
        "dedupe_size": ReceiverSettings().dedupe_size,  # the LRU's bound; it holds applied event ids only
        "applied_event_ids": outcomes.get("applied", 0),
        "steps": rows,
    }


# --- entry point ---------------------------------------------------------------------------------------------


async def _timed(work: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    started = time.perf_counter()
    result = await work()
    return {**result, "seconds": round(time.perf_counter() - started, 1)}


async def bench_memory(sandbox: Sandbox, kube: Kube, state_dir: Path, sizes: MemorySizes) -> dict[str, Any]:
    """Operator RSS resuming ``sizes.invoices`` invoices, receiver RSS over ``sizes.deliveries`` deliveries, and the
    receiver's bounded structures."""
    return {
        "sizes": asdict(sizes),
        "operator": await _timed(lambda: bench_operator_memory(sandbox, kube, state_dir, sizes)),
        "receiver": await _timed(lambda: bench_receiver_memory(sandbox, kube, state_dir, sizes)),
        "bounds": measure_bounds(),
    }
