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
    assert set(data["suites"]) == {"ceiling", "links", "memory", "shards", "recovery"}

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
    assert links["emails_sent_by_then"] <= links["invoices"] and links["kube_requests_per_invoice"] > 0
    beside = links["with_open"]  # the same burst beside open invoices that reconciliation keeps asking Stripe about
    loaded, preloaded = beside["loaded"], beside["loaded"]["before_burst"]
    assert loaded["open"] == loaded["invoices"] == loaded["invoices_with_one_link"] == links["invoices"]
    assert loaded["invoices_with_more_links"] == 0 and loaded["stripe_429"] == 0
    assert preloaded["open_invoices"] == beside["sizes"]["open_invoices"] > 0
    assert preloaded["background_requests_before_burst"] >= beside["sizes"]["min_background"]
    assert beside["alone_over_loaded"] > 0

    memory = data["suites"]["memory"]
    mixed = memory["operator"]["mixed"]
    assert mixed["idle"] and mixed["objects_resumed"] >= mixed["invoices"]
    assert (mixed["payment_links_created"], mixed["emails_sent"], mixed["paid_phase_changed"]) == (0, 0, 0)
    assert memory["receiver"]["unexpected"] == 0
    assert memory["bounds"]["dedupe"]["entries_after_3x"] == memory["bounds"]["dedupe"]["capacity"]

    shards = data["suites"]["shards"]  # 3 shards on 3 integrations against 1 operator (bench.shards)
    for run in (shards["one"], shards["three"]):
        assert run["open"] == run["invoices"] == run["invoices_with_one_link"] > 0 and run["stripe_429"] == 0
    assert shards["three"]["shards"] == len(shards["three"]["operator_cpu_s"]) == 3
    assert shards["throughput_3_over_1"] > 0 and "4b. Sharding" in done.stdout
    assert shards["cpu_ms_per_own_invoice"] > 0 and shards["cpu_ms_per_other_shards_invoice"] >= 0

    recovery = data["suites"]["recovery"]  # Stripe requests per reconciliation pass, few and many open invoices
    assert recovery["few"]["per_pass"] > 0 and recovery["many"]["per_pass"] <= recovery["few"]["per_pass"] + 1
    assert not any("checkout/sessions" in kind for kind in recovery["many"]["by_kind"])  # no per-invoice listing
    assert recovery["many"]["by_kind"]["GET /v1/events 200"] > 0 and "4c. Missed-webhook" in done.stdout

    emulator_targets = {"b/a", "c/d", "links_of_bound", "links_429", "webhook_to_paid_p99_ms", "operator_rss_mib_10k",
                        "links_beside_open", "kube_requests_per_invoice", "recovery_requests_per_pass",
                        "recovery_many_over_few"}
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
                                                       "real:links_of_bound", "real:links_429",
                                                       "real:kube_requests_per_invoice"}
    assert "Real kube-apiserver" in done.stdout and "Emulator and real kube-apiserver" in done.stdout
