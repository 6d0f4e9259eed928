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


def write_json(name: str, data: dict[str, Any], results: Path = RESULTS) -> Path:
    results.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = results / f"{name}-{stamp}.json"
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    return path


def render(data: dict[str, Any]) -> str:
    parts = []
    m = data["machine"]
    parts.append(f"fluxrate bench {data['name']} at {data['date']} on {m['nproc']} CPU {m['uname_m']}, "
                 f"load {' '.join(m['loadavg'] or [])}")
    if "kube" in data["suites"]:
        parts.append(table("Sandbox Kubernetes API (kubernetes_asyncio client, in-process emulator)",
                           ["operation", "conc", "count", "per_s", "p50_ms", "p95_ms", "p99_ms"],
                           [[r["operation"], r["concurrency"], r["count"], r["per_s"], r["p50_ms"], r["p95_ms"],
                             r["p99_ms"]] for r in data["suites"]["kube"]]))
    for run in data["suites"].get("receiver", []):
        parts.append(table(f"Webhook receiver ({run['mode']}): HTTP over loopback, aiohttp client",
                           ["scenario", "conc", "count", "per_s", "p50_ms", "p95_ms", "p99_ms", "kube_req/deliv",
                            "rx_cpu_ms/deliv", "unexpected"],
                           [[r["scenario"], r["concurrency"], r["count"], r["per_s"], r["p50_ms"], r["p95_ms"],
                             r["p99_ms"], r["kube_requests_per_delivery"], r["receiver_cpu_ms_per_delivery"],
                             r["unexpected"]] for r in run["rows"]]))
        mem = run["memory"]
        soak = ", ".join(f"{s['rss_mib']}" for s in mem["soak"])
        parts.append(f"RSS MiB ({mem['rss_includes']}): start {mem['rss_mib_start']}, after scenarios "
                     f"{mem['rss_mib_after_scenarios']}, after each soak round [{soak}], end {mem['rss_mib_end']}, "
                     f"peak {mem['peak_rss_mib']}; {mem['deliveries_total']} deliveries; status.deliveries.recent "
                     f"holds {mem['status_recent_entries']}")
    if "memory_bounds" in data["suites"]:
        b = data["suites"]["memory_bounds"]
        d, p = b["dedupe"], b["pending_recent"]
        parts.append(f"\n== Receiver memory bounds (tracemalloc)\ndedupe LRU capacity {d['capacity']}: "
                     f"{d['entries_after_1x']} entries / {d['heap_mib_after_1x']} MiB after 1x, "
                     f"{d['entries_after_3x']} entries / {d['heap_mib_after_3x']} MiB after 3x capacity adds\n"
                     f"pending recent deliveries (limit {p['limit']}): {p['entries_after_1x']} entries / "
                     f"{p['heap_kib_after_1x']} KiB after 1x, {p['entries_after_100x']} / {p['heap_kib_after_100x']} "
                     "KiB after 100x")
    if "operator" in data["suites"]:
        parts.append(_operator(data["suites"]["operator"]))
    parts.append(f"\ntotal {data['duration_s']} s")
    return "\n".join(parts)


def _operator(runs: Sequence[dict[str, Any]]) -> str:
    headers = ["N", "bursts", "ready", "seconds", "floor_s", "inv/s", "p50_s", "p95_s", "links", "emails",
               "stripe_req", "429s", "op_cpu_s", "sbx_cpu_s", "kube_req", "rss_idle", "rss_N", "rss_later"]
    rows = []
    for r in runs:
        per = r["per_invoice_create_to_ready"]
        rows.append([r["invoices"], r["batches"], r["ready"], r["all_open_emailed_s"], r["floor_s"],
                     r["invoices_per_s"], round(per["p50_ms"] / 1000, 2), round(per["p95_ms"] / 1000, 2),
                     r["payment_links_created"], r["emails_sent"], r["stripe_requests"], r["stripe_429"],
                     r["operator_cpu_s"], r["sandbox_cpu_s"], r["kube_requests"], r["rss_mib_idle"],
                     r["rss_mib_with_invoices"], r["rss_mib_settled"]])
    parts = [table("Operator (separate process): API create of N finalized invoices -> all Open + emailed",
                   headers, rows)]
    for r in runs:
        if r["rss_mib_after_each_batch"]:
            steps = ", ".join(f"{s['invoices']}: {s['rss_mib']}" for s in r["rss_mib_after_each_batch"])
            parts.append(f"operator RSS MiB after each burst (invoices held: MiB): idle {r['rss_mib_idle']}, {steps}")
        if r["kube_requests_by_kind"]:
            kinds = ", ".join(f"{k} {v}" for k, v in r["kube_requests_by_kind"].items())
            parts.append(f"Kubernetes requests during N={r['invoices']} (bursts {r['batches']}): {kinds}")
        stripe = ", ".join(f"{k} x{v}" for k, v in r["stripe_requests_by_kind"].items())
        parts.append(f"Stripe requests during N={r['invoices']} (bursts {r['batches']}): {stripe}")
    return "\n".join(parts)
