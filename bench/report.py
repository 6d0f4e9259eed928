"""Where results go: tables on stdout, JSON in bench/results/<name>-<date>.json, with the machine they ran on."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def _run(*args: str) -> str:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=5, check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine() -> dict[str, Any]:
    return {
        "nproc": os.cpu_count(),
        "uname_m": platform.machine(),
        "python": platform.python_version(),
        "free_h": _run("free", "-h"),
        "loadavg": Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else None,
    }


def table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str("" if v is None else v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [f"\n== {title}", line, "-" * len(line)]
    out += ["  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(out)


def ceiling_table(title: str, rows: list[dict[str, Any]]) -> str:
    return table(title, ["cell", "conc", "count", "RPS", "p50_ms", "p99_ms", "outcomes", "unexpected"],
                 [[r["cell"], r["concurrency"], r["count"], r["per_s"], r["p50_ms"], r["p99_ms"],
                   " ".join(f"{k}:{v}" for k, v in r["outcomes"].items()), r["unexpected"]] for r in rows])


def write_json(name: str, data: dict[str, Any], results: Path = RESULTS) -> Path:
    results.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = results / f"{name}-{stamp}.json"
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    return path


TARGETS = {  # issue 10: (what, comparison, bound)
    "b/a": ("receiver on already-applied events / bare aiohttp, RPS", ">=", 0.6),
    "c/d": ("receiver applying payments / sandbox API status patches, RPS", ">=", 0.8),
    "links_of_bound": ("1000 invoices: bound (N / 25 s) / time until all Open", ">=", 0.9),
    "links_429": ("answers of 429 from Stripe during it", "==", 0),
    "webhook_to_paid_p99_ms": ("webhook -> Paid p99 at 50% of (c), ms", "<", 100.0),
    "operator_rss_mib_10k": ("operator RSS with 10,000 invoices, MiB", "<", 250.0),
    # the same targets with the real kube-apiserver in place of the emulator (issue 14)
    "real:c/d": ("real server: receiver applying payments / kube-apiserver status patches, RPS", ">=", 0.8),
    "real:links_of_bound": ("real server: 1000 invoices: bound (N / 25 s) / time until all Open", ">=", 0.9),
    "real:links_429": ("real server: answers of 429 from Stripe during it", "==", 0),
    "real:webhook_to_paid_p99_ms": ("real server: webhook -> Paid p99 at 50% of (c), ms", "<", 100.0),
    # issue 18, links first (bench.links_first) and Kubernetes requests per invoice on its way to Open
    "links_beside_open": ("1000 invoices: time until all Open alone / beside 20,000 open invoices", ">=", 0.9),
    "kube_requests_per_invoice": ("Kubernetes requests per invoice, created -> Open and emailed", "<=", 6),
    "real:kube_requests_per_invoice": ("real server: Kubernetes requests per invoice, the same", "<=", 6),
    # issue 18, recovery through the Events API (bench.recovery)
    "recovery_requests_per_pass": ("20,000 open invoices: Stripe requests per reconciliation pass", "<=", 5),
    "recovery_many_over_few": ("Stripe requests per pass, 20,000 open invoices / 20", "<=", 1.5),
}


def _measured(data: dict[str, Any]) -> dict[str, Any]:
    suites = data["suites"]
    out: dict[str, Any] = {}
    if "ceiling" in suites:
        ceiling = suites["ceiling"]
        out["b/a"], out["c/d"] = ceiling["ratios"]["b/a"], ceiling["ratios"]["c/d"]
        out["webhook_to_paid_p99_ms"] = ceiling["latency"]["webhook_to_paid"]["p99_ms"]
    if "links" in suites:
        out["links_of_bound"], out["links_429"] = suites["links"]["of_bound"], suites["links"]["stripe_429"]
        out["kube_requests_per_invoice"] = suites["links"]["kube_requests_per_invoice"]
        if suites["links"].get("with_open"):
            out["links_beside_open"] = suites["links"]["with_open"]["alone_over_loaded"]
    if "recovery" in suites:  # issue 18, Build 1 (bench.recovery)
        out["recovery_requests_per_pass"] = suites["recovery"]["many"]["per_pass"]
        out["recovery_many_over_few"] = suites["recovery"]["many_over_few"]
    if "memory" in suites:
        mixed = suites["memory"]["operator"].get("mixed") or {}
        out["operator_rss_mib_10k"] = mixed.get("rss_mib") if mixed.get("idle") else None
    real = (data.get("real_kube") or {}).get("suites") or {}
    if "ceiling" in real:
        out["real:c/d"] = real["ceiling"]["ratios"]["c/d"]
        out["real:webhook_to_paid_p99_ms"] = real["ceiling"]["latency"]["webhook_to_paid"]["p99_ms"]
    if "links" in real:
        out["real:links_of_bound"], out["real:links_429"] = real["links"]["of_bound"], real["links"]["stripe_429"]
        out["real:kube_requests_per_invoice"] = real["links"]["kube_requests_per_invoice"]
    return out


def targets(data: dict[str, Any]) -> dict[str, Any]:
    """Each target of issue 10 with the measured value and whether it was met (None: not measured)."""
    result = {}
    for key, value in _measured(data).items():
        what, op, bound = TARGETS[key]
        met = None if value is None else {">=": value >= bound, "<": value < bound, "<=": value <= bound,
                                        "==": value == bound}[op]
        result[key] = {"what": what, "target": f"{op} {bound}", "measured": value, "met": met}
    return result


def render(data: dict[str, Any]) -> str:
    m = data["machine"]
    parts = [f"fluxrate bench {data['name']} at {data['date']} on {m['nproc']} CPU {m['uname_m']}, load "
             f"{' '.join(m['loadavg'] or [])}" + (" (PROFILED: figures not comparable)" if data["profiled"] else "")]
    suites = data["suites"]
    if "ceiling" in suites:
        ceiling = suites["ceiling"]
        parts.append(ceiling_table("1. Receiver ceiling: one load generator process, closed loop, keep-alive",
                                   ceiling["rows"]))
        parts.append(f"ratios: b/a {ceiling['ratios']['b/a']}, c/d {ceiling['ratios']['c/d']}")
        cost = ceiling.get("receiver_cost")
        if cost:
            parts.append(f"inside the receiver, per duplicate delivery (bench.receiver_cost, in-process): "
                         f"{cost['handle_us']} us = log line {cost['log_line_us']} + signature check "
                         f"{cost['verification_us']} + the rest {cost['rest_us']}")
        lat = ceiling["latency"]
        paid, answer = lat["webhook_to_paid"], lat["delivery_answer"]
        parts.append(f"\n== 2. Webhook -> Paid at {lat['rate_per_s']}/s (half of (c)), open loop\n"
                     f"{lat['paid_seen']} of {lat['deliveries']} seen Paid by a watch: p50 {paid['p50_ms']} ms, "
                     f"p95 {paid['p95_ms']} ms, p99 {paid['p99_ms']} ms, max {paid['max_ms']} ms (answer p99 "
                     f"{answer['p99_ms']} ms; unexpected outcomes {lat['unexpected']})")
    if "links" in suites:
        parts.append(_links("3. Payment links", suites["links"]))
        if suites["links"].get("with_open"):
            parts.append(_links_beside_open(suites["links"]["with_open"]))
    if "memory" in suites:
        parts.append(_memory(suites["memory"]))
    if "shards" in suites:  # issue 18, Build 5 (bench.shards)
        parts.append(_shards(suites["shards"]))
    if "recovery" in suites:  # issue 18, Build 1 (bench.recovery)
        parts.append(_recovery(suites["recovery"]))
    if data.get("real_kube"):
        parts.append(_real(data["real_kube"], suites))
    if data.get("profiles"):
        for name, summary in data["profiles"].items():
            own = ", ".join(f"{f} {p}%" for f, p in summary["own_pct"][:8])
            parts.append(f"\nprofile {name} ({summary['samples']} samples; {summary['file']}): {own}")
    if data.get("targets"):
        title = "Targets (issue 10)" + (" -- QUICK SIZES: NOT MEASURED" if data["quick"] else "")
        parts.append(table(title, ["target", "what", "wanted", "measured", "met"],
                           [[k, t["what"], t["target"], t["measured"], {True: "yes", False: "MISSED", None: "-"}[
                               t["met"]]] for k, t in data["targets"].items()]))
    parts.append(f"\ntotal {data['duration_s']} s")
    return "\n".join(parts)


def _links(title: str, r: dict[str, Any]) -> str:
    per = r["finalize_to_open"]
    return (f"\n== {title}: {r['invoices']} invoices finalized at once, Stripe stand-in at 25 req/s\n"
            f"all Open after {r['all_open_s']} s (bound {r['bound_s']} s: {r['of_bound']} of it; invoices "
            f"written in {r['write_s']} s); 429s {r['stripe_429']}; finalize -> Open p50 "
            f"{round(per['p50_ms'] / 1000, 2)} s, p99 {round(per['p99_ms'] / 1000, 2)} s; links: "
            f"{r['invoices_with_one_link']} invoices with one, {r['invoices_with_more_links']} with more; "
            f"Stripe requests {r['stripe_requests_by_kind']}; Kubernetes requests {r['kube_requests']} "
            f"({r['kube_requests_per_invoice']} per invoice, counted once every email was recorded); "
            f"operator CPU {r['operator_cpu_s']} s, RSS {r['operator_rss_mib']}")


def _links_beside_open(w: dict[str, Any]) -> str:
    r, pre = w["loaded"], w["loaded"]["before_burst"] or {}
    return (_links(f"3b. The same burst beside {pre.get('open_invoices')} open invoices (reconcileInterval "
                   f"{w['sizes']['reconcile_interval_s']} s)", r) +
            f"\nbefore the burst: clones written in {pre.get('clone_s')} s, reconciliation asking "
            f"{pre.get('background_per_s_before_burst')} Stripe requests/s, operator settled {pre.get('settled')}; "
            f"during it: {r['background_requests_during_burst']} background Stripe requests; all Open after "
            f"{r['all_open_s']} s against {w['alone_all_open_s']} s alone: {w['alone_over_loaded']}")


def _real(real: dict[str, Any], emulator: dict[str, Any]) -> str:
    """Section 5: the real kube-apiserver's figures, and beside the emulator's where both were taken."""
    if "skipped" in real:
        return f"\n== 5. Real kube-apiserver: skipped ({real['skipped']})"
    parts = [f"\n== 5. Real kube-apiserver ({real['server']}; started in {real['start_s']} s)"]
    suites = real["suites"]
    compare: list[list[Any]] = []
    if "ceiling" in suites:
        ceiling = suites["ceiling"]
        parts.append(ceiling_table("5.1 Receiver ceiling on the real server: closed loop, keep-alive", ceiling["rows"]))
        lat = ceiling["latency"]
        paid = lat["webhook_to_paid"]
        parts.append(f"c/d {ceiling['ratios']['c/d']} (invoices seeded in {ceiling['setup_s']} s); webhook -> Paid "
                     f"at {lat['rate_per_s']}/s: {lat['paid_seen']} of {lat['deliveries']} seen Paid, p50 "
                     f"{paid['p50_ms']} ms, p99 {paid['p99_ms']} ms, max {paid['max_ms']} ms (unexpected "
                     f"{lat['unexpected']})")
        emu = emulator.get("ceiling")
        if emu:
            by = {r["cell"][:3]: r for r in emu["rows"]}
            for row in ceiling["rows"]:
                compare.append([row["cell"][:3] + " RPS", by[row["cell"][:3]]["per_s"], row["per_s"]])
            compare.append(["c/d", emu["ratios"]["c/d"], ceiling["ratios"]["c/d"]])
            compare.append(["webhook -> Paid p99 ms", emu["latency"]["webhook_to_paid"]["p99_ms"], paid["p99_ms"]])
    if "links" in suites:
        links = suites["links"]
        parts.append(_links("5.2 Payment links on the real server", links))
        emu = emulator.get("links")
        if emu:
            for key in ("all_open_s", "of_bound", "stripe_429", "kube_requests", "kube_requests_per_invoice",
                        "operator_cpu_s"):
                compare.append([f"links {key}", emu[key], links[key]])
    if compare:
        parts.append(table("5.3 Emulator and real kube-apiserver, this run", ["figure", "emulator", "real"],
                           compare))
    return "\n".join(parts)


def _memory(memory: dict[str, Any]) -> str:
    op, rx = memory["operator"], memory["receiver"]
    rows = []
    for key in ("mixed", "all_open"):
        run = op.get(key)
        if run:
            rows.append([key, run["invoices"], run.get("mix"), run["objects_resumed"], run["resumed_s"], run["idle"],
                         run["rss_mib"], run["peak_rss_mib"], run["operator_cpu_s"], run["kube_requests"],
                         run["payment_links_created"], run["emails_sent"], run["paid_phase_changed"]])
    parts = [table(f"4. Memory: operator (own process; idle {op['rss_mib_idle']} MiB) resuming invoices",
                   ["run", "invoices", "mix", "resumed", "resumed_s", "idle", "rss_mib", "peak_mib", "cpu_s",
                    "kube_req", "new_links", "emails", "paid_changed"], rows)]
    steps = ", ".join(str(s) for s in rx["rss_mib_after_each_step"])
    parts.append(f"receiver: {rx['deliveries']} deliveries ({rx['outcomes']}; unexpected {rx['unexpected']}): RSS "
                 f"{rx['rss_mib_start']} MiB at start, after each step [{steps}], peak {rx['peak_rss_mib']} MiB")
    b = memory["bounds"]
    d, p = b["dedupe"], b["pending_recent"]
    parts.append(f"bounded structures (tracemalloc): dedupe LRU {d['entries_after_3x']} entries / "
                 f"{d['heap_mib_after_3x']} MiB after 3x its capacity of adds; pending recent deliveries "
                 f"{p['entries_after_100x']} / {p['heap_kib_after_100x']} KiB after 100x")
    return "\n".join(parts)


def _shards(r: dict[str, Any]) -> str:
    """Sharding: link throughput of 3 shards on 3 integrations against 1 operator (bench.shards)."""
    rows = [[run["shards"], run["invoices"], run["all_open_s"], run["links_per_s"], run["bound_links_per_s"],
             round(run["finalize_to_open"]["p99_ms"] / 1000, 2), f"{run['invoices_with_one_link']}/"
             f"{run['invoices_with_more_links']}", run["stripe_429"], run["operator_cpu_s"],
             run["operator_peak_rss_mib"]] for run in (r["one"], r["three"])]
    return table(f"4b. Sharding: {r['one']['integrations']} integrations (one per shard of 3), invoices finalized "
                 f"at once; links/s of 3 shards / 1 operator: {r['throughput_3_over_1']}; operator CPU per invoice "
                 f"to Open: {r['cpu_ms_per_own_invoice']} ms for its own, {r['cpu_ms_per_other_shards_invoice']} ms "
                 f"for another shard's (decoded and dropped)",
                 ["shards", "invoices", "all Open s", "links/s", "Stripe bound/s", "finalize->Open p99 s",
                  "one/more links", "429s", "operator CPU s", "peak RSS MiB"], rows)


def _recovery(r: dict[str, Any]) -> str:
    """Stripe requests per reconciliation pass with few and many open invoices (bench.recovery)."""
    rows = [[run["open_invoices"], run["passes"], run["seconds"], run["stripe_requests"], run["per_pass"],
             ", ".join(f"{k}: {n}" for k, n in run["by_kind"].items())] for run in (r["few"], r["many"])]
    return table(f"4c. Missed-webhook recovery: Stripe requests per reconciliation pass (reconcileInterval "
                 f"{r['sizes']['interval_s']} s; Events API listings, no payments meanwhile); many/few "
                 f"{r['many_over_few']}; {r['many']['open_invoices']} clones written in {r['many']['clone_s']} s",
                 ["open invoices", "passes", "seconds", "Stripe requests", "per pass", "by kind"], rows)
