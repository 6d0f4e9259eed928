"""The benchmark entry point runs at a tiny size and writes the JSON it documents (no timing is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_quick_run_writes_the_expected_json(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "bench", "--quick", "--name", "smoke", "--results-dir", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (path,) = tmp_path.glob("smoke-*.json")
    data = json.loads(path.read_text())
    assert {"name", "date", "machine", "suites", "targets", "duration_s"} <= data.keys()
    assert {"nproc", "uname_m", "free_h"} <= data["machine"].keys()
    assert set(data["suites"]) == {"ceiling", "links", "memory"}

    ceiling = data["suites"]["ceiling"]
    assert [r["cell"][:3] for r in ceiling["rows"]] == ["(a)", "(b)", "(x)", "(c)", "(d)"]
    for row in ceiling["rows"]:
        assert row["count"] > 0 and row["unexpected"] == 0, row  # every answer was the one its cell expects
    assert set(ceiling["ratios"]) == {"b/a", "c/d"}
    assert {"handle_us", "log_line_us", "verification_us", "rest_us"} <= ceiling["receiver_cost"].keys()
    latency = ceiling["latency"]
    assert latency["unexpected"] == 0 and latency["paid_seen"] == latency["deliveries"] > 0

    links = data["suites"]["links"]
    assert links["open"] == links["invoices"] == links["invoices_with_one_link"]
    assert links["invoices_with_more_links"] == 0 and links["stripe_429"] == 0

    memory = data["suites"]["memory"]
    mixed = memory["operator"]["mixed"]
    assert mixed["idle"] and mixed["objects_resumed"] >= mixed["invoices"]
    assert (mixed["payment_links_created"], mixed["emails_sent"], mixed["paid_phase_changed"]) == (0, 0, 0)
    assert memory["receiver"]["unexpected"] == 0
    assert memory["bounds"]["dedupe"]["entries_after_3x"] == memory["bounds"]["dedupe"]["capacity"]

    assert set(data["targets"]) == {"b/a", "c/d", "links_of_bound", "links_429", "webhook_to_paid_p99_ms",
                                    "operator_rss_mib_10k"}
    assert "Targets (issue 10)" in done.stdout and "Receiver ceiling" in done.stdout
