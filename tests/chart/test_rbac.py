"""What each process may do, read from the rendered Roles and ClusterRoles."""

from __future__ import annotations

from typing import Any

import pytest

from tests.chart.conftest import CHART, VALUE_SETS, by_kind, render

CHART_TEMPLATES = CHART / "templates"

RBAC_KINDS = ("ClusterRole", "Role")
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection", "*"}


def roles(docs: list[dict[str, Any]], component: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] in RBAC_KINDS
            and d["metadata"]["labels"]["app.kubernetes.io/component"] == component]


def grants(role_docs: list[dict[str, Any]]) -> set[tuple[str, str, str, str]]:
    """(role kind, apiGroup, resource, verb) for every rule."""
    return {(doc["kind"], group, resource, verb)
            for doc in role_docs for rule in doc["rules"]
            for group in rule["apiGroups"] for resource in rule["resources"] for verb in rule["verbs"]}


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_no_wildcards_anywhere(name: str) -> None:
    for doc in by_kind(render(VALUE_SETS[name]), "ClusterRole") + by_kind(render(VALUE_SETS[name]), "Role"):
        for rule in doc["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], f"{doc['metadata']['name']}: {rule}"
            assert "nonResourceURLs" not in rule


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_receiver_writes_only_the_two_status_subresources_and_events(name: str) -> None:
    written = {(group, resource) for _, group, resource, verb in grants(roles(render(VALUE_SETS[name]), "receiver"))
               if verb in WRITE_VERBS}
    assert written == {("billing.fluxrate.co", "invoices/status"),
                       ("billing.fluxrate.co", "stripeintegrations/status"), ("", "events")}


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_receiver_reads_secrets_by_name_only(name: str) -> None:
    secret_verbs = {verb for _, group, resource, verb in grants(roles(render(VALUE_SETS[name]), "receiver"))
                    if group == "" and resource == "secrets"}
    assert secret_verbs == {"get"}


def test_receiver_reads_its_objects_by_name_and_lists_only_invoices() -> None:
    receiver = grants(roles(render(), "receiver"))
    assert receiver == {
        ("ClusterRole", "billing.fluxrate.co", "stripeintegrations", "get"),
        ("ClusterRole", "billing.fluxrate.co", "invoices", "get"),
        ("ClusterRole", "billing.fluxrate.co", "invoices", "list"),
        ("ClusterRole", "billing.fluxrate.co", "invoices/status", "patch"),
        ("ClusterRole", "billing.fluxrate.co", "stripeintegrations/status", "patch"),
        ("ClusterRole", "", "secrets", "get"),
        ("ClusterRole", "", "events", "create"),
    }


def test_operator_grants_match_what_kopf_and_the_handlers_do() -> None:
    operator = {(group, resource, verb) for _, group, resource, verb in grants(roles(render(), "operator"))}
    for resource in ("stripeintegrations", "invoices"):
        assert {("billing.fluxrate.co", resource, v) for v in ("get", "list", "watch", "patch")} <= operator
        assert ("billing.fluxrate.co", f"{resource}/status", "patch") in operator
        assert ("billing.fluxrate.co", resource, "delete") not in operator
    # watches Secrets for rotation, keeps the managed signing secret; never deletes one
    assert {("", "secrets", v) for v in ("get", "list", "watch", "create", "patch")} <= operator
    assert ("", "secrets", "delete") not in operator and ("", "secrets", "update") not in operator
    assert ("", "events", "create") in operator
    assert ("apiextensions.k8s.io", "customresourcedefinitions", "watch") in operator
    # no peering without HA
    assert not {g for g, _, _ in operator} & {"kopf.dev"}


def test_every_rule_says_why() -> None:
    rendered = (CHART_TEMPLATES / "rbac.yaml").read_text()
    lines = rendered.splitlines()
    for index, line in enumerate(lines):
        if line.strip().startswith("- apiGroups:"):
            above = lines[index - 1].strip()
            if above.startswith("{{-"):
                above = lines[index - 2].strip()
            assert above.startswith("#"), f"rule at line {index + 1} of rbac.yaml has no comment"


def test_namespaced_mode_uses_roles_in_each_watched_namespace_and_nothing_cluster_wide() -> None:
    docs = render(VALUE_SETS["namespaced"])
    assert not by_kind(docs, "ClusterRole") and not by_kind(docs, "ClusterRoleBinding")
    for component in ("operator", "receiver"):
        component_roles = roles(docs, component)
        assert sorted(r["metadata"]["namespace"] for r in component_roles) == ["team-a", "team-b"]
        bindings = [b for b in by_kind(docs, "RoleBinding")
                    if b["metadata"]["labels"]["app.kubernetes.io/component"] == component]
        assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
        for binding in bindings:
            (subject,) = binding["subjects"]
            assert subject == {"kind": "ServiceAccount", "name": f"fr-fluxrate-{component}", "namespace": "billing"}
            assert binding["roleRef"]["kind"] == "Role"
    # both processes are told to serve just these namespaces
    maps = {d["metadata"]["name"]: d["data"] for d in by_kind(docs, "ConfigMap")}
    assert maps["fr-fluxrate-operator"]["FLUXRATE_WATCH_NAMESPACES"] == "team-a,team-b"
    assert maps["fr-fluxrate-receiver"]["FLUXRATE_RECEIVER_NAMESPACES"] == "team-a,team-b"


def test_cluster_wide_bindings_point_at_the_release_service_accounts() -> None:
    docs = render()
    for binding in by_kind(docs, "ClusterRoleBinding"):
        component = binding["metadata"]["labels"]["app.kubernetes.io/component"]
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                      "name": f"fr-fluxrate-{component}"}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": f"fr-fluxrate-{component}",
                                        "namespace": "billing"}]
    assert len(by_kind(docs, "ClusterRoleBinding")) == 2


def test_ha_grants_peering_at_the_right_scope() -> None:
    cluster = {(g, r) for _, g, r, _ in grants(roles(render(VALUE_SETS["ha"]), "operator"))}
    assert ("kopf.dev", "clusterkopfpeerings") in cluster and ("kopf.dev", "kopfpeerings") not in cluster
    namespaced = {(g, r) for _, g, r, _ in grants(roles(render(VALUE_SETS["ha-namespaced"]), "operator"))}
    assert ("kopf.dev", "kopfpeerings") in namespaced and ("kopf.dev", "clusterkopfpeerings") not in namespaced
    assert not grants(roles(render(VALUE_SETS["ha"]), "receiver")) & {
        (k, "kopf.dev", r, v) for k in ("ClusterRole", "Role") for r in ("kopfpeerings", "clusterkopfpeerings")
        for v in ("get", "patch")}


def test_rbac_create_false_renders_no_rbac() -> None:
    docs = render({"rbac": {"create": False}})
    assert not [d for d in docs if d["apiVersion"].startswith("rbac.authorization.k8s.io")]



def peering_rules(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [rule for doc in roles(docs, "operator") for rule in doc["rules"] if rule["apiGroups"] == ["kopf.dev"]]


@pytest.mark.parametrize(("name", "extra"), [("ha", {}), ("ha-namespaced", {}),
                                             ("ha", {"operator": {"ha": {"peeringName": "billing-peers"}}})],
                         ids=["cluster-wide", "namespaced", "named"])
def test_ha_peering_grants_are_limited_to_the_release_peering_object(name: str, extra: dict[str, Any]) -> None:
    values = {**VALUE_SETS[name], "operator": {**VALUE_SETS[name]["operator"],
                                               "ha": {**VALUE_SETS[name]["operator"]["ha"],
                                                      **extra.get("operator", {}).get("ha", {})}}}
    docs = render(values)
    peering = by_kind(docs, "ConfigMap")
    (operator_config,) = [d["data"] for d in peering if d["metadata"]["name"] == "fr-fluxrate-operator"]
    peering_name = operator_config["FLUXRATE_PEERING"]  # what the operator's list/watch fieldSelector names
    assert peering_name == extra.get("operator", {}).get("ha", {}).get("peeringName", "fr-fluxrate")
    rules = peering_rules(docs)
    assert rules
    for rule in rules:
        if rule.get("resourceNames") is None:  # create cannot be restricted by name: nothing else goes unnamed
            assert rule["verbs"] == ["create"]
        else:
            assert rule["resourceNames"] == [peering_name]
            assert set(rule["verbs"]) == {"get", "list", "watch", "patch"}
    named = {verb for rule in rules if rule.get("resourceNames") for verb in rule["verbs"]}
    assert {"list", "watch", "patch"} <= named


def test_the_secrets_rule_explains_why_it_is_not_narrower() -> None:
    text = (CHART_TEMPLATES / "rbac.yaml").read_text()
    assert "billing.fluxrate.co/watch=true" in text and "RBAC cannot restrict list/watch by label" in text
    assert "least-privilege install" in text
