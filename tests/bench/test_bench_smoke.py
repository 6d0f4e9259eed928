"""The benchmark entry point runs at a tiny size and writes the JSON it documents (no timing is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_quick_run_writes_the_expected_json(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "bench", "--quick", "--name", "smoke", "--results-dir", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (path,) = tmp_path.glob("smoke-*.json")
    data = json.loads(path.read_text())
    assert {"name", "date", "machine", "suites", "duration_s"} <= data.keys()
    assert {"nproc", "uname_m", "free_h"} <= data["machine"].keys()
    assert set(data["suites"]) == {"kube", "receiver", "memory_bounds", "operator"}

    assert {r["operation"] for r in data["suites"]["kube"]} >= {"create invoice", "patch invoice status"}
    assert [run["mode"] for run in data["suites"]["receiver"]] == ["inprocess", "process"]
    for run in data["suites"]["receiver"]:
        assert {r["scenario"] for r in run["rows"]} == {"signature_failed", "ignored", "applied", "duplicate"}
        for row in run["rows"]:
            assert {"count", "per_s", "p50_ms", "p95_ms", "p99_ms", "kube_requests_per_delivery"} <= row.keys()
            assert row["unexpected"] == 0, row  # every delivery got the outcome its scenario expects
        assert {"rss_mib_start", "rss_mib_end", "soak", "status_recent_entries"} <= run["memory"].keys()
        assert all(r["unexpected"] == 0 for r in run["memory"]["soak"])

    bounds = data["suites"]["memory_bounds"]
    assert bounds["dedupe"]["entries_after_3x"] == bounds["dedupe"]["capacity"]
    burst, growth = data["suites"]["operator"]
    assert (burst["batches"], growth["batches"]) == (1, 2)
    for op in (burst, growth):
        assert op["ready"] == op["invoices"] == op["payment_links_created"] == op["emails_sent"]
        assert op["stripe_429"] == 0
    assert [step["invoices"] for step in growth["rss_mib_after_each_batch"]] == [2, 4]
    assert "smoke" in done.stdout and "Webhook receiver" in done.stdout
