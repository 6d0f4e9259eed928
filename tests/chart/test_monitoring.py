"""Monitoring in the chart: the operator's metrics port, Service and ServiceMonitor, and the optional PrometheusRule
and Grafana dashboard, whose queries must name only series the code exports, with labels and values it uses."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from fluxrate.operator.metrics import STRIPE_OUTCOMES, BillingMetrics
from fluxrate.payments import HANDLED_TYPES
from fluxrate.webhook_receiver.metrics import OUTCOMES, ReceiverMetrics
from tests.chart.conftest import CHART, VALUE_SETS, by_kind, one, render, run_helm

MONITORING = VALUE_SETS["monitoring"]
# Label values a query may match on, per label: the code's bounded sets.
ALLOWED_VALUES = {
    ("fluxrate_receiver_deliveries_total", "outcome"): set(OUTCOMES),
    ("fluxrate_receiver_deliveries_total", "type"): set(HANDLED_TYPES),
    ("fluxrate_stripe_requests_total", "outcome"): set(STRIPE_OUTCOMES),
}


def exported_series() -> dict[str, set[str]]:
    """Every sample name the operator's and the receiver's registries export, with its label names (each registry
    fed once, so that labelled series exist)."""
    billing = BillingMetrics()
    billing.update_invoice("a", "i", {"status": {"phase": "Open", "amountDue": {"minor": 1, "currency": "USD"}}})
    billing.update_invoice("a", "j", {"status": {"phase": "Paid", "amountDue": {"minor": 1, "currency": "USD"},
                                                 "amountRefunded": {"minor": 1, "currency": "USD"}}})
    billing.update_integration("a", "s", {"status": {}})
    receiver = ReceiverMetrics()
    receiver.observe("applied", "charge.dispute.created", 0.01)
    series: dict[str, set[str]] = {}
    for registry in (billing.registry, receiver.registry):
        for family in registry.collect():
            for sample in family.samples:
                series.setdefault(sample.name, set()).update(sample.labels)
    return series


def check_query(expr: str, series: dict[str, set[str]]) -> list[str]:
    """Problems of one PromQL expression: unknown series, labels they lack, label values the code never sets."""
    problems = []
    names = re.findall(r"\b(fluxrate_[a-z0-9_]+)\b", expr)
    if not names:
        problems.append(f"no fluxrate series in {expr!r}")
    for name in names:
        if name not in series:
            problems.append(f"{name} is not exported")
    for name, matchers in re.findall(r"\b(fluxrate_[a-z0-9_]+)\{([^}]*)\}", expr):
        for label, value in re.findall(r'(\w+)\s*=~?\s*"([^"]*)"', matchers):
            if label not in series.get(name, set()):
                problems.append(f"{name} has no label {label}")
            allowed = ALLOWED_VALUES.get((name, label))
            if allowed is not None and value not in allowed:
                problems.append(f"{name}{{{label}}} is never {value!r}")
    grouped = {label.strip() for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr)
               for label in group.split(",") if label.strip()}
    known_labels = set().union(*(series.get(name, set()) for name in names))
    problems += [f"{expr!r} groups by {label}, a label of none of its series"
                 for label in grouped - known_labels]
    return problems


def test_the_query_check_catches_a_wrong_name_label_or_value() -> None:
    series = exported_series()
    assert check_query('sum(increase(fluxrate_receiver_deliveries_total{outcome="signature_failed"}[5m]))',
                       series) == []
    assert check_query("fluxrate_receiver_deliveries{}", series) == ["fluxrate_receiver_deliveries is not exported"]
    assert check_query('fluxrate_stripe_requests_total{outcome="unauthorized"}', series) == [
        "fluxrate_stripe_requests_total{outcome} is never 'unauthorized'"]
    assert check_query("max by (currency) (fluxrate_invoices)", series) == [
        "'max by (currency) (fluxrate_invoices)' groups by currency, a label of none of its series"]


def rule_of(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (rule,) = by_kind(docs, "PrometheusRule")
    return rule


def test_the_prometheus_rule_alerts_on_what_the_issue_asks_with_runbook_annotations() -> None:
    rule = rule_of(render(MONITORING))
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["namespace"] == "billing"
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    alerts = {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"]}
    assert set(alerts) == {"FluxrateIntegrationNotReady", "FluxrateWebhookSignatureFailures",
                           "FluxrateStripeAuthenticationErrors", "FluxrateDisputeOpened",
                           "FluxrateOverdueInvoicesGrowing"}
    for name, alert in alerts.items():
        assert alert["labels"]["severity"] in {"critical", "warning"}, name
        assert alert["labels"]["team"] == "billing", name
        assert alert["annotations"]["summary"] and len(alert["annotations"]["description"]) > 80, name
    not_ready = alerts["FluxrateIntegrationNotReady"]
    assert (not_ready["expr"], not_ready["for"]) == (
        "max by (namespace, integration) (fluxrate_integration_ready) == 0", "10m")
    assert "describe stripeintegration" in not_ready["annotations"]["description"]
    assert 'outcome="signature_failed"' in alerts["FluxrateWebhookSignatureFailures"]["expr"]
    assert 'outcome="authentication_error"' in alerts["FluxrateStripeAuthenticationErrors"]["expr"]
    assert 'type="charge.dispute.created"' in alerts["FluxrateDisputeOpened"]["expr"]
    assert "fluxrate_invoices_overdue offset 1d" in alerts["FluxrateOverdueInvoicesGrowing"]["expr"]


def test_every_alert_expression_names_only_exported_series_labels_and_values() -> None:
    series = exported_series()
    rule = rule_of(render(MONITORING))
    problems = [p for group in rule["spec"]["groups"] for r in group["rules"] for p in check_query(r["expr"], series)]
    assert problems == []


def test_alerts_can_be_tuned_turned_off_and_placed_elsewhere() -> None:
    rule = rule_of(render({"prometheusRule": {"enabled": True, "namespace": "monitoring", "alerts": {
        "disputeOpened": {"enabled": False},
        "integrationNotReady": {"severity": "page", "for": "30m"},
        "signatureFailures": {"threshold": 20}}}}))
    assert rule["metadata"]["namespace"] == "monitoring"
    alerts = {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"]}
    assert "FluxrateDisputeOpened" not in alerts and len(alerts) == 4
    assert alerts["FluxrateIntegrationNotReady"]["labels"] == {"severity": "page"}
    assert alerts["FluxrateIntegrationNotReady"]["for"] == "30m"
    assert alerts["FluxrateWebhookSignatureFailures"]["expr"].endswith("[15m])) > 20")


def dashboard_of(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    config_map = one(docs, "ConfigMap", "fr-fluxrate-dashboard")
    (body,) = config_map["data"].values()
    return config_map, json.loads(body)


def test_the_dashboard_is_a_configmap_for_the_grafana_sidecar_with_the_billing_panels() -> None:
    config_map, dashboard = dashboard_of(render(MONITORING))
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "Billing"}
    assert list(config_map["data"]) == ["fluxrate-billing.json"]
    assert dashboard["uid"] == "fluxrate-billing"
    queries = {panel["title"]: " ".join(t["expr"] for t in panel["targets"]) for panel in dashboard["panels"]}
    wanted = {"Invoices by phase": "fluxrate_invoices)", "Outstanding by currency": "outstanding_minor",
              "Refunded by currency": "refunded_minor", "Overdue invoices": "fluxrate_invoices_overdue",
              "Open disputes": "fluxrate_disputes_open", "Integrations ready": "fluxrate_integration_ready",
              "Webhook deliveries by outcome": "fluxrate_receiver_deliveries_total",
              "Webhook delivery latency p99": "histogram_quantile(0.99",
              "Stripe requests by outcome": "fluxrate_stripe_requests_total"}
    for title, fragment in wanted.items():
        matching = [query for panel_title, query in queries.items() if panel_title.startswith(title)]
        assert matching and fragment in matching[0], title
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert all(panel["datasource"]["uid"] == "${datasource}" for panel in dashboard["panels"])


def test_every_dashboard_query_names_only_exported_series_labels_and_values() -> None:
    series = exported_series()
    _, dashboard = dashboard_of(render(MONITORING))
    problems = [p for panel in dashboard["panels"] for target in panel["targets"]
                for p in check_query(target["expr"], series)]
    assert problems == []


def test_the_dashboard_label_and_folder_follow_the_sidecar_settings() -> None:
    config_map, _ = dashboard_of(render({"grafanaDashboard": {
        "enabled": True, "namespace": "grafana", "label": {"key": "grafana.io/dashboard", "value": "billing"},
        "folderAnnotation": "k8s-sidecar-target-directory", "folder": "/tmp/dashboards/Billing"}}))
    assert config_map["metadata"]["namespace"] == "grafana"
    assert config_map["metadata"]["labels"]["grafana.io/dashboard"] == "billing"
    assert config_map["metadata"]["annotations"] == {"k8s-sidecar-target-directory": "/tmp/dashboards/Billing"}
    config_map, _ = dashboard_of(render({"grafanaDashboard": {"enabled": True}}))
    assert "annotations" not in config_map["metadata"]


def test_neither_the_rule_nor_the_dashboard_renders_by_default() -> None:
    docs = render()
    assert not by_kind(docs, "PrometheusRule")
    assert "fr-fluxrate-dashboard" not in {d["metadata"]["name"] for d in by_kind(docs, "ConfigMap")}


def test_the_operator_metrics_port_is_served_by_a_service_the_service_monitor_scrapes() -> None:
    docs = render(MONITORING)
    container = one(docs, "Deployment", "fr-fluxrate-operator")["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["metrics"] == 9090
    assert one(docs, "ConfigMap", "fr-fluxrate-operator")["data"]["FLUXRATE_METRICS_PORT"] == "9090"
    service = one(docs, "Service", "fr-fluxrate-operator-metrics")
    pod_labels = one(docs, "Deployment", "fr-fluxrate-operator")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}]
    monitor = one(docs, "ServiceMonitor", "fr-fluxrate-operator")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    receiver_service = one(docs, "Service", "fr-fluxrate-receiver")
    assert not monitor["spec"]["selector"]["matchLabels"].items() <= receiver_service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"], endpoint["honorLabels"]) == ("metrics", "/metrics", True)
    policy = one(docs, "NetworkPolicy", "fr-fluxrate-operator")
    (allowed,) = policy["spec"]["ingress"]
    assert allowed["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert allowed["from"] == MONITORING["networkPolicy"]["metricsFrom"]


@pytest.mark.parametrize("ha", [False, True])
def test_metrics_port_zero_turns_the_operator_endpoint_off(ha: bool) -> None:
    docs = render({"operator": {"metricsPort": 0, "ha": {"enabled": ha}},
                   "serviceMonitor": {"enabled": True}, "networkPolicy": {"enabled": True}})
    assert one(docs, "ConfigMap", "fr-fluxrate-operator")["data"]["FLUXRATE_METRICS_PORT"] == "0"
    for deployment in by_kind(docs, "Deployment"):
        ports = deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
        assert "metrics" not in {p["name"] for p in ports}
    assert "fr-fluxrate-operator-metrics" not in {s["metadata"]["name"] for s in by_kind(docs, "Service")}
    assert [m["metadata"]["name"] for m in by_kind(docs, "ServiceMonitor")] == ["fr-fluxrate-receiver"]
    assert one(docs, "NetworkPolicy", "fr-fluxrate-operator")["spec"]["ingress"] == []


def test_ha_operators_each_expose_the_metrics_port() -> None:
    docs = render({"operator": {"ha": {"enabled": True}}})
    operators = [d for d in by_kind(docs, "Deployment") if "operator" in d["metadata"]["name"]]
    assert len(operators) == 2
    service = one(docs, "Service", "fr-fluxrate-operator-metrics")
    for deployment in operators:
        pod = deployment["spec"]["template"]
        assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
        assert "metrics" in {p["name"] for p in pod["spec"]["containers"][0]["ports"]}


def test_notes_mention_the_metrics_the_rule_and_the_dashboard_when_enabled() -> None:
    args = ["install", "fr", str(CHART), "--dry-run=client", "--namespace", "billing",
            "--set", "publicBaseUrl=https://billing.example.com"]
    plain = run_helm(*args)
    assert plain.returncode == 0, plain.stderr
    notes = plain.stdout.split("NOTES:", 1)[1]
    assert "service/fr-fluxrate-operator-metrics" in notes
    assert "prometheusrule/" not in notes and "configmap/fr-fluxrate-dashboard" not in notes
    enabled = run_helm(*args, "--set", "prometheusRule.enabled=true", "--set", "prometheusRule.labels.release=prom",
                       "--set", "grafanaDashboard.enabled=true", "--set", "serviceMonitor.enabled=true")
    assert enabled.returncode == 0, enabled.stderr
    notes = enabled.stdout.split("NOTES:", 1)[1]
    assert "prometheusrule/fr-fluxrate in namespace billing" in notes
    assert "release=prom" in notes
    assert "configmap/fr-fluxrate-dashboard in namespace billing, labelled grafana_dashboard=1" in notes
    assert "both scraped through ServiceMonitors" in notes


def test_the_documented_monitoring_upgrade_renders_the_rule_the_dashboard_and_both_monitors() -> None:
    text = (CHART.parents[1] / "docs" / "install.md").read_text().replace("\\\n", " ")
    (line,) = [line for line in text.splitlines()
               if line.startswith("helm upgrade fluxrate charts/fluxrate ") and "prometheusRule" in line]
    sets = [arg for arg in line.split() if "=" in arg and not arg.startswith("--")]
    args = [a for s in sets for a in ("--set", s)]
    done = run_helm("template", "fluxrate", str(CHART), "--namespace", "billing",
                    "--set", "publicBaseUrl=https://billing.example.com", *args)
    assert done.returncode == 0, done.stderr
    kinds = [doc["kind"] for doc in yaml.safe_load_all(done.stdout) if doc]
    assert kinds.count("PrometheusRule") == 1 and kinds.count("ServiceMonitor") == 2
    assert 'grafana_folder: "Billing"' in done.stdout
