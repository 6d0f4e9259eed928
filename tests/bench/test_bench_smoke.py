"""The benchmark entry point runs at a tiny size and writes the JSON it documents (no timing is asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from fluxrate_sandbox.real_kube import RealKubeUnavailable, realkube_binary

ROOT = Path(__file__).resolve().parents[2]


def real_kube_built() -> bool:
    """The bench measures the real kube-apiserver too when it is built; CI (FLUXRATE_REQUIRE_REAL_KUBE=1) needs it."""
    try:
        realkube_binary()
    except RealKubeUnavailable:
        assert os.environ.get("FLUXRATE_REQUIRE_REAL_KUBE") != "1", "the realkube binary is required but not built"
        return False
    return True


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

    emulator_targets = {"b/a", "c/d", "links_of_bound", "links_429", "webhook_to_paid_p99_ms", "operator_rss_mib_10k"}
    assert "Targets (issue 10)" in done.stdout and "Receiver ceiling" in done.stdout

    real = data["real_kube"]
    if not real_kube_built():
        assert "skipped" in real and "real kube-apiserver figures skipped" in done.stdout
        assert set(data["targets"]) == emulator_targets
        return
    assert set(real["suites"]) == {"ceiling", "links"}
    ceiling = real["suites"]["ceiling"]
    assert [r["cell"][:3] for r in ceiling["rows"]] == ["(c)", "(d)"]
    for row in ceiling["rows"]:  # the receiver applied every payment; the server took every guarded patch
        assert row["count"] > 0 and row["unexpected"] == 0, row
    assert ceiling["rows"][0]["outcomes"] == {"applied": ceiling["rows"][0]["count"]}
    assert ceiling["rows"][1]["outcomes"] == {"HTTP 200": ceiling["rows"][1]["count"]}
    latency = ceiling["latency"]
    assert latency["unexpected"] == 0 and latency["paid_seen"] == latency["deliveries"] > 0
    links = real["suites"]["links"]
    assert links["open"] == links["invoices"] == links["invoices_with_one_link"]
    assert links["invoices_with_more_links"] == 0 and links["stripe_429"] == 0
    assert set(data["targets"]) == emulator_targets | {"real:c/d", "real:webhook_to_paid_p99_ms",
                                                       "real:links_of_bound", "real:links_429"}
    assert "Real kube-apiserver" in done.stdout and "Emulator and real kube-apiserver" in done.stdout
