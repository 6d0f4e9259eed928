"""Object semantics of the Kubernetes API emulator, checked over HTTPS as a client sees them."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from fluxrate.crds import CRD_FILES
from tests.sandbox.conftest import REPO, WIDGET_API, WIDGET_CRD, Backend, until, widget

MERGE = {"Content-Type": "application/merge-patch+json"}
JSONPATCH = {"Content-Type": "application/json-patch+json"}
SMP = {"Content-Type": "application/strategic-merge-patch+json"}


async def call(api: aiohttp.ClientSession, method: str, url: str, body: Any = None,
               headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    async with api.request(method, url, json=body, headers=headers) as response:
        return response.status, await response.json()


async def create(api: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> dict[str, Any]:
    status, obj = await call(api, "POST", url, body)
    assert status == 201, obj
    return obj


async def test_anonymous_requests_are_403_and_bad_tokens_401(kube: Backend) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=kube.ssl_context())) as anon:
        async with anon.get(f"{kube.url}/api/v1/namespaces") as response:
            assert response.status == 403  # anonymous authentication is on, RBAC gives system:anonymous nothing
            body = await response.json()
            assert body["reason"] == "Forbidden" and body["details"] == {"kind": "namespaces"}
            assert body["message"] == ('namespaces is forbidden: User "system:anonymous" cannot list resource '
                                       '"namespaces" in API group "" at the cluster scope')
        async with anon.get(f"{kube.url}/apis/test.fluxrate.co/v1/namespaces/default/widgets/x") as response:
            assert (await response.json())["message"] == (
                'widgets.test.fluxrate.co "x" is forbidden: User "system:anonymous" cannot get resource "widgets" '
                'in API group "test.fluxrate.co" in the namespace "default"')
        async with anon.get(f"{kube.url}/version") as response:
            assert response.status == 200
        async with anon.get(f"{kube.url}/api/v1/namespaces", headers={"Authorization": "Bearer nope"}) as response:
            assert response.status == 401
            assert (await response.json())["reason"] == "Unauthorized"


async def test_server_certificate_is_signed_by_the_written_ca(kube: Backend) -> None:
    async with aiohttp.ClientSession() as untrusting:
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await untrusting.get(f"{kube.url}/healthz")
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=kube.ssl_context())) as trusting:
        async with trusting.get(f"{kube.url}/healthz") as response:
            assert response.status == 200


async def test_metadata_is_filled_on_create(api: aiohttp.ClientSession, kube: Backend, widgets: str) -> None:
    obj = await create(api, widgets, widget("w1"))
    meta = obj["metadata"]
    assert meta["namespace"] == kube.namespace and meta["generation"] == 1 and meta["uid"]
    assert int(meta["resourceVersion"]) > 0 and meta["creationTimestamp"].endswith("Z")
    generated = await create(api, widgets, {**widget(), "metadata": {"generateName": "w-"}})
    assert generated["metadata"]["name"].startswith("w-") and len(generated["metadata"]["name"]) == 7


async def test_create_existing_is_409_already_exists(api: aiohttp.ClientSession, widgets: str) -> None:
    await create(api, widgets, widget("w1"))
    status, body = await call(api, "POST", widgets, widget("w1"))
    assert status == 409
    assert body["reason"] == "AlreadyExists"
    assert body["message"] == 'widgets.test.fluxrate.co "w1" already exists'
    status, body = await call(api, "POST", widgets, {**widget("w2"), "metadata": {"name": "w2",
                                                                                    "resourceVersion": "1"}})
    assert status == 500 and "reason" not in body  # not a StatusError on the real server
    assert body["message"] == "resourceVersion should not be set on objects to be created"


async def test_missing_object_is_404_with_details(api: aiohttp.ClientSession, widgets: str) -> None:
    status, body = await call(api, "GET", f"{widgets}/nope")
    assert status == 404
    assert body["reason"] == "NotFound"
    assert body["details"] == {"name": "nope", "group": "test.fluxrate.co", "kind": "widgets"}
    assert body["message"] == 'widgets.test.fluxrate.co "nope" not found'


async def test_stale_resource_version_is_409_conflict(api: aiohttp.ClientSession, widgets: str) -> None:
    obj = await create(api, widgets, widget("w1"))
    stale = obj["metadata"]["resourceVersion"]
    status, _ = await call(api, "PATCH", f"{widgets}/w1", {"spec": {"size": 5}}, MERGE)
    assert status == 200
    status, body = await call(api, "PATCH", f"{widgets}/w1",
                              {"metadata": {"resourceVersion": stale}, "spec": {"size": 6}}, MERGE)
    assert status == 409
    assert body["reason"] == "Conflict"
    assert body["message"] == ('Operation cannot be fulfilled on widgets.test.fluxrate.co "w1": the object has been '
                               "modified; please apply your changes to the latest version and try again")
    obj["spec"]["size"] = 7
    status, body = await call(api, "PUT", f"{widgets}/w1", obj)
    assert status == 409


async def test_dry_run_changes_nothing(api: aiohttp.ClientSession, kube: Backend,
                                       widgets: str) -> None:
    status, obj = await call(api, "POST", f"{widgets}?dryRun=All", widget("w1"))
    assert status == 201 and obj["spec"]["size"] == 3
    assert await kube.get_object(WIDGET_API, "widgets", "w1") is None
    await create(api, widgets, widget("w1"))
    status, obj = await call(api, "PATCH", f"{widgets}/w1?dryRun=All", {"spec": {"size": 9}}, MERGE)
    assert status == 200 and obj["spec"]["size"] == 9
    assert (await kube.get_object(WIDGET_API, "widgets", "w1"))["spec"]["size"] == 3


async def test_put_without_resource_version_is_422(api: aiohttp.ClientSession, widgets: str) -> None:
    obj = await create(api, widgets, widget("w1"))
    del obj["metadata"]["resourceVersion"]
    status, body = await call(api, "PUT", f"{widgets}/w1", obj)
    assert status == 422
    assert body["message"] == ('widgets.test.fluxrate.co "w1" is invalid: metadata.resourceVersion: Invalid value: 0: '
                               "must be specified for an update")


async def test_put_replaces_the_spec(api: aiohttp.ClientSession, kube: Backend,
                                     widgets: str) -> None:
    obj = await create(api, widgets, widget("w1", size=2, locked=False))
    obj["spec"] = {"currency": "EUR"}
    status, body = await call(api, "PUT", f"{widgets}/w1", obj)
    assert status == 200
    assert body["spec"] == {"currency": "EUR", "size": 3, "options": {"color": "blue"}}
    assert (await kube.get_object(WIDGET_API, "widgets", "w1"))["spec"]["currency"] == "EUR"


async def test_status_subresource_isolation(api: aiohttp.ClientSession, widgets: str) -> None:
    await create(api, widgets, {**widget("w1"), "status": {"phase": "Ready"}})
    status, obj = await call(api, "GET", f"{widgets}/w1")
    assert "status" not in obj  # status is dropped on create

    status, obj = await call(api, "PATCH", f"{widgets}/w1", {"spec": {"size": 9}, "status": {"phase": "Ready"}}, MERGE)
    assert status == 200
    assert obj["spec"]["size"] == 9 and "status" not in obj

    status, obj = await call(api, "PATCH", f"{widgets}/w1/status",
                             {"spec": {"size": 1}, "metadata": {"labels": {"x": "y"}}, "status": {"phase": "Ready"}},
                             MERGE)
    assert status == 200
    assert obj["status"] == {"phase": "Ready"}
    assert obj["spec"]["size"] == 9 and "labels" not in obj["metadata"]


async def test_undeclared_status_field_is_pruned(api: aiohttp.ClientSession, kube: Backend,
                                                 widgets: str) -> None:
    await create(api, widgets, widget("w1"))
    async with api.patch(f"{widgets}/w1/status", json={"status": {"phase": "Ready", "bogus": 1}},
                         headers=MERGE) as response:
        assert response.status == 200
        assert 'unknown field \\"status.bogus\\"' in response.headers["Warning"]
        assert (await response.json())["status"] == {"phase": "Ready"}
    assert (await kube.get_object(WIDGET_API, "widgets", "w1"))["status"] == {"phase": "Ready"}


async def test_strict_field_validation_rejects_unknown_fields(api: aiohttp.ClientSession,
                                                              widgets: str) -> None:
    status, body = await call(api, "POST", f"{widgets}?fieldValidation=Strict", widget("w1", colour="red"))
    assert status == 400
    assert 'strict decoding error: unknown field "spec.colour"' in body["message"]


async def test_invalid_object_is_422_with_field_paths(api: aiohttp.ClientSession, widgets: str) -> None:
    body = widget("w1", lineItems=[{"quantity": 2}, {"quantity": 0}], size="big")
    body["spec"]["currency"] = "usd"
    status, result = await call(api, "POST", widgets, body)
    assert status == 422
    assert result["reason"] == "Invalid"
    fields = {c["field"]: c["message"] for c in result["details"]["causes"]}
    assert fields["spec.currency"] == "Invalid value: \"usd\": spec.currency in body should match '^[A-Z]{3}$'"
    assert fields["spec.lineItems[1].quantity"] == (
        "Invalid value: 0: spec.lineItems[1].quantity in body should be greater than or equal to 1")
    assert "spec.size in body must be of type integer" in fields["spec.size"]
    assert result["message"].startswith('Widget.test.fluxrate.co "w1" is invalid: [')


async def test_required_nullable_int_or_string_and_format(api: aiohttp.ClientSession,
                                                          widgets: str) -> None:
    status, result = await call(api, "POST", widgets, {**widget("w1"), "spec": {"contact": "not-an-email"}})
    assert status == 422
    causes = {c["field"]: c for c in result["details"]["causes"]}
    assert causes["spec.currency"]["message"] == "Required value"
    assert "must be of type email" in causes["spec.contact"]["message"]
    ok = await create(api, widgets, widget("w2", note=None, lineItems=[{"quantity": 1, "amount": "1.50"},
                                                                {"quantity": 1, "amount": 2}]))
    assert ok["spec"]["lineItems"][1]["amount"] == 2


async def test_defaults_are_applied_recursively(api: aiohttp.ClientSession, widgets: str) -> None:
    obj = await create(api, widgets, widget("w1"))
    assert obj["spec"]["size"] == 3
    assert obj["spec"]["options"] == {"color": "blue"}
    obj = await create(api, widgets, widget("w2", options={"color": "red"}, size=1))
    assert obj["spec"]["options"] == {"color": "red"} and obj["spec"]["size"] == 1


async def test_preserve_unknown_fields_keeps_data(api: aiohttp.ClientSession, widgets: str) -> None:
    obj = await create(api, widgets, widget("w1", extra={"anything": {"goes": [1, 2]}}, labelsCopy={"a": "b"}))
    assert obj["spec"]["extra"] == {"anything": {"goes": [1, 2]}}
    assert obj["spec"]["labelsCopy"] == {"a": "b"}


async def test_cel_transition_rule_is_enforced_on_update_only(api: aiohttp.ClientSession, widgets: str) -> None:
    await create(api, widgets, widget("w1", locked=True))  # oldSelf rules are skipped on create
    status, body = await call(api, "PATCH", f"{widgets}/w1", {"spec": {"currency": "EUR"}}, MERGE)
    assert status == 422
    assert body["details"]["causes"] == [{"reason": "FieldValueInvalid", "field": "spec",
                                          "message": 'Invalid value: "object": currency cannot change once locked'}]
    assert body["message"] == ('Widget.test.fluxrate.co "w1" is invalid: spec: Invalid value: "object": '
                               "currency cannot change once locked")
    status, _ = await call(api, "PATCH", f"{widgets}/w1", {"spec": {"size": 4}}, MERGE)
    assert status == 200


async def test_difference_cel_rules_cel_python_cannot_run_are_not_enforced(
        api: aiohttp.ClientSession, kube: Backend, widgets: str) -> None:
    """Pinned difference: the emulator skips (and lists) rules cel-python cannot run, such as the Kubernetes
    CEL library's isURL(); the real server enforces them."""
    status, body = await call(api, "POST", widgets, widget("w2", url="not a url"))
    if kube.real:
        assert status == 422 and body["details"]["causes"] == [
            {"reason": "FieldValueInvalid", "field": "spec.url", "message": 'Invalid value: "string": bad url'}]
    else:
        assert status == 201
        assert [r.rule for r in kube.sandbox.skipped_cel_rules()] == ["isURL(self)"]


async def test_generation_bumps_on_spec_changes_only(api: aiohttp.ClientSession, widgets: str) -> None:
    await create(api, widgets, widget("w1"))
    _, obj = await call(api, "PATCH", f"{widgets}/w1", {"metadata": {"labels": {"a": "b"}}}, MERGE)
    assert obj["metadata"]["generation"] == 1
    _, obj = await call(api, "PATCH", f"{widgets}/w1/status", {"status": {"phase": "Ready"}}, MERGE)
    assert obj["metadata"]["generation"] == 1
    _, obj = await call(api, "PATCH", f"{widgets}/w1", {"spec": {"size": 8}}, MERGE)
    assert obj["metadata"]["generation"] == 2


async def test_noop_patch_keeps_resource_version(api: aiohttp.ClientSession, widgets: str) -> None:
    obj = await create(api, widgets, widget("w1", size=5))
    _, patched = await call(api, "PATCH", f"{widgets}/w1", {"spec": {"size": 5}}, MERGE)
    assert patched["metadata"]["resourceVersion"] == obj["metadata"]["resourceVersion"]
    _, patched = await call(api, "PATCH", f"{widgets}/w1", {"status": {"phase": "Ready"}}, MERGE)  # dropped
    assert patched["metadata"]["resourceVersion"] == obj["metadata"]["resourceVersion"]


async def test_json_patch_and_failed_test_op(api: aiohttp.ClientSession, widgets: str) -> None:
    await create(api, widgets, widget("w1", size=2))
    status, obj = await call(api, "PATCH", f"{widgets}/w1", [
        {"op": "test", "path": "/spec/size", "value": 2},
        {"op": "replace", "path": "/spec/size", "value": 4},
        {"op": "add", "path": "/metadata/labels", "value": {"k": "v"}},
    ], JSONPATCH)
    assert status == 200 and obj["spec"]["size"] == 4 and obj["metadata"]["labels"] == {"k": "v"}
    status, body = await call(api, "PATCH", f"{widgets}/w1", [
        {"op": "test", "path": "/spec/size", "value": 2},
        {"op": "replace", "path": "/spec/size", "value": 10},
    ], JSONPATCH)
    assert status == 422  # the real server's generic answer; the JSON-patch error text is not returned
    assert body == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "code": 422,
                    "reason": "Invalid", "message": "the server rejected our request due to an error in our request",
                    "details": {}}
    _, obj = await call(api, "GET", f"{widgets}/w1")
    assert obj["spec"]["size"] == 4
    status, body = await call(api, "PATCH", f"{widgets}/w1", [{"op": "frobnicate", "path": "/spec"}], JSONPATCH)
    assert status == 422 and body["message"] == "the server rejected our request due to an error in our request"


async def test_merge_patch_null_deletes_and_smp_is_415_for_custom_resources(
        api: aiohttp.ClientSession, widgets: str) -> None:
    await create(api, widgets, {**widget("w1"), "metadata": {"name": "w1", "labels": {"a": "1", "b": "2"}}})
    _, obj = await call(api, "PATCH", f"{widgets}/w1", {"metadata": {"labels": {"a": None}}}, MERGE)
    assert obj["metadata"]["labels"] == {"b": "2"}
    status, body = await call(api, "PATCH", f"{widgets}/w1", {"spec": {"size": 2}},
                              {"Content-Type": "application/strategic-merge-patch+json"})
    assert status == 415
    assert body["reason"] == "UnsupportedMediaType"


async def test_finalizers_hold_deletion(api: aiohttp.ClientSession, kube: Backend,
                                        widgets: str) -> None:
    await create(api, widgets, {**widget("w1"), "metadata": {"name": "w1", "finalizers": ["test.fluxrate.co/hold"]}})
    status, obj = await call(api, "DELETE", f"{widgets}/w1")
    assert status == 200
    assert obj["metadata"]["deletionTimestamp"] and obj["metadata"]["deletionGracePeriodSeconds"] == 0
    status, obj = await call(api, "GET", f"{widgets}/w1")
    assert status == 200 and obj["metadata"]["deletionTimestamp"]
    status, body = await call(api, "PATCH", f"{widgets}/w1", {"metadata": {"finalizers": ["a", "b"]}}, MERGE)
    assert status == 422 and "no new finalizers can be added" in body["message"]
    status, _ = await call(api, "PATCH", f"{widgets}/w1", {"metadata": {"finalizers": None}}, MERGE)
    assert status == 200
    status, _ = await call(api, "GET", f"{widgets}/w1")
    assert status == 404
    assert await kube.get_object(WIDGET_API, "widgets", "w1") is None


async def test_owner_deletion_garbage_collects_dependents(api: aiohttp.ClientSession, kube: Backend,
                                                          widgets: str) -> None:
    owner = await create(api, widgets, widget("owner"))
    other = await create(api, widgets, widget("other"))

    def ref(obj: dict[str, Any]) -> dict[str, Any]:
        return {"apiVersion": "test.fluxrate.co/v1", "kind": "Widget", "name": obj["metadata"]["name"],
                "uid": obj["metadata"]["uid"], "controller": True}

    await create(api, f"/api/v1/namespaces/{kube.namespace}/secrets", {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "owned", "ownerReferences": [ref(owner)]},
        "stringData": {"k": "v"}})
    await create(api, widgets, {**widget("held"), "metadata": {"name": "held", "ownerReferences": [ref(owner)],
                                                      "finalizers": ["x/y"]}})
    await create(api, widgets, {**widget("shared"), "metadata": {"name": "shared", "ownerReferences": [
        ref(owner), {**ref(other), "controller": False}]}})

    status, _ = await call(api, "DELETE", f"{widgets}/owner")
    assert status == 200

    async def collected() -> bool:  # the real garbage collector runs in the controller-manager, in the background
        held = await kube.get_object(WIDGET_API, "widgets", "held")
        shared = await kube.get_object(WIDGET_API, "widgets", "shared")
        return (await kube.get_object("v1", "secrets", "owned") is None
                and held is not None and bool(held["metadata"].get("deletionTimestamp"))
                and shared is not None and [r["name"] for r in shared["metadata"]["ownerReferences"]] == ["other"])

    assert await until(collected, timeout=60)


async def test_delete_answers_a_status_naming_the_uid(api: aiohttp.ClientSession, widgets: str) -> None:
    """Gone at once: a Success Status (the object itself is returned only while finalizers hold it)."""
    obj = await create(api, widgets, widget("w1"))
    status, deleted = await call(api, "DELETE", f"{widgets}/w1")
    assert status == 200
    assert deleted == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": {
        "name": "w1", "group": "test.fluxrate.co", "kind": "widgets", "uid": obj["metadata"]["uid"]}}
    status, _ = await call(api, "DELETE", f"{widgets}/w1")
    assert status == 404


async def test_secrets_merge_string_data(api: aiohttp.ClientSession, kube: Backend) -> None:
    url = f"/api/v1/namespaces/{kube.namespace}/secrets"
    obj = await create(api, url, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                             "data": {"a": base64.b64encode(b"1").decode()}, "stringData": {"b": "2"}})
    assert obj["type"] == "Opaque" and "stringData" not in obj
    assert {k: base64.b64decode(v) for k, v in obj["data"].items()} == {"a": b"1", "b": b"2"}
    status, obj = await call(api, "PATCH", f"{url}/s", {"stringData": {"a": "one"}},
                             {"Content-Type": "application/strategic-merge-patch+json"})
    assert status == 200 and base64.b64decode(obj["data"]["a"]) == b"one"


async def test_namespaced_objects_need_their_namespace(api: aiohttp.ClientSession, kube: Backend) -> None:
    nowhere = f"{kube.namespace}-nowhere"
    url = f"/api/v1/namespaces/{nowhere}/configmaps"
    status, body = await call(api, "POST", url, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}})
    assert status == 404 and body["message"] == f'namespaces "{nowhere}" not found'
    await create(api, "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": nowhere}})
    await create(api, url, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}})
    status, _ = await call(api, "DELETE", f"/api/v1/namespaces/{nowhere}")
    assert status == 200
    await kube.wait_gone(f"/api/v1/namespaces/{nowhere}")
    status, _ = await call(api, "GET", f"{url}/c")
    assert status == 404


async def test_crd_becomes_discoverable_and_established(api: aiohttp.ClientSession, kube: Backend,
                                                        widgets: str) -> None:
    _, resources = await call(api, "GET", "/apis/test.fluxrate.co/v1")
    by_name = {r["name"]: r for r in resources["resources"]}
    assert by_name["widgets"]["kind"] == "Widget" and by_name["widgets"]["shortNames"] == ["wd"]
    assert by_name["widgets"]["namespaced"] is True and "watch" in by_name["widgets"]["verbs"]
    assert "widgets/status" in by_name
    _, groups = await call(api, "GET", "/apis")
    assert "test.fluxrate.co" in [g["name"] for g in groups["groups"]]
    _, crd = await call(api, "GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.test.fluxrate.co")
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions == {"Established": "True", "NamesAccepted": "True"}
    assert crd["status"]["acceptedNames"]["kind"] == "Widget"
    status, _ = await call(api, "DELETE", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"
                                          "widgets.test.fluxrate.co")
    assert status == 200
    await kube.wait_gone("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.test.fluxrate.co")
    async with api.get(widgets) as response:  # the group is gone: the server's mux answers, in plain text
        assert response.status == 404 and await response.text() == "404 page not found\n"


async def test_table_output_uses_printer_columns(api: aiohttp.ClientSession, widgets: str) -> None:
    await create(api, widgets, widget("w1", size=4))
    await call(api, "PATCH", f"{widgets}/w1/status", {"status": {"phase": "Ready", "conditions": [
        {"type": "Synced", "status": "False"}, {"type": "Ready", "status": "True"}]}}, MERGE)
    _, table = await call(api, "GET", widgets, headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"})
    assert table["kind"] == "Table"
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Phase", "Ready", "Size"]
    assert table["rows"][0]["cells"] == ["w1", "Ready", "True", 4]


@pytest.mark.parametrize("name", CRD_FILES)
def test_repo_crd_files_exist_under_the_names_the_product_uses(name: str) -> None:
    """A renamed or missing CRD file fails here instead of leaving the repo-CRD tests below without a CRD."""
    path = REPO / "crds" / name
    assert path.is_file(), f"{path} is missing: fluxrate.crds.CRD_FILES names it"
    docs = list(yaml.safe_load_all(path.read_text()))
    assert [d["kind"] for d in docs] == ["CustomResourceDefinition"]


async def test_invalid_invoice_from_repo_crds_is_422(api: aiohttp.ClientSession, kube: Backend) -> None:
    await kube.apply_crds(REPO / "crds")
    invoice = yaml.safe_load((REPO / "examples" / "03-invoice-usd.yaml").read_text())
    invoice["spec"]["lineItems"][0]["quantity"] = 0
    status, body = await call(api, "POST", f"/apis/billing.fluxrate.co/v1alpha1/namespaces/{kube.namespace}/invoices",
                              invoice)
    assert status == 422, body
    assert body["details"]["kind"] == "Invoice"
    assert "spec.lineItems[0].quantity" in [c["field"] for c in body["details"]["causes"]]


@pytest.mark.emulator_only  # which rules cel-python can run is the emulator's own question
async def test_every_cel_rule_of_repo_crds_is_enforced(kube: Backend) -> None:
    await kube.apply_crds(REPO / "crds")
    assert kube.sandbox.skipped_cel_rules() == []


async def test_finalized_invoice_cannot_go_back_to_draft(api: aiohttp.ClientSession, kube: Backend) -> None:
    await kube.apply_crds(REPO / "crds")
    invoice = yaml.safe_load((REPO / "examples" / "03-invoice-usd.yaml").read_text())
    url = f"/apis/billing.fluxrate.co/v1alpha1/namespaces/{kube.namespace}/invoices"
    created = await create(api, url, invoice)
    assert created["spec"]["state"] == "Finalized"
    status, body = await call(api, "PATCH", f"{url}/{invoice['metadata']['name']}", {"spec": {"state": "Draft"}},
                              MERGE)
    assert status == 422, body
    assert body["details"]["causes"][0]["field"] == "spec"
    assert "Finalized invoice can only move to Void" in body["message"]


async def test_apply_crds_from_directory(api: aiohttp.ClientSession, kube: Backend, tmp_path: Path) -> None:
    (tmp_path / "crds").mkdir()
    (tmp_path / "crds" / "w.yaml").write_text(yaml.safe_dump(WIDGET_CRD))
    applied = await kube.apply_crds(tmp_path / "crds")
    assert [c["metadata"]["name"] for c in applied] == ["widgets.test.fluxrate.co"]
    _, resources = await call(api, "GET", "/apis/test.fluxrate.co/v1")
    assert [r["kind"] for r in resources["resources"] if r["name"] == "widgets"] == ["Widget"]


async def test_non_string_labels_are_400(api: aiohttp.ClientSession, widgets: str) -> None:
    status, body = await call(api, "POST", widgets, {**widget(), "metadata": {"name": "w1", "labels": {"n": 1}}})
    assert status == 400 and body["reason"] == "BadRequest"
    assert body["message"] == ('Widget in version "v1" cannot be handled as a Widget: json: cannot unmarshal number '
                               "into Go struct field ObjectMeta.labels of type string")


@pytest.mark.emulator_only  # KubeSandbox's in-process helpers
async def test_in_process_helpers_keep_server_semantics(kube: Backend, widgets: str) -> None:
    from fluxrate_sandbox.kube_errors import ApiError

    sandbox = kube.sandbox
    created = sandbox.create_object({**widget("w1"), "metadata": {"name": "w1", "namespace": "default",
                                                                  "finalizers": ["x/y"]}})
    assert created["kind"] == "Widget" and created["metadata"]["generation"] == 1
    patched = sandbox.patch_object("test.fluxrate.co/v1", "widgets", "default", "w1", {"status": {"phase": "Ready"}},
                                   subresource="status")
    assert patched["status"] == {"phase": "Ready"}
    with pytest.raises(ApiError) as error:
        sandbox.patch_object("test.fluxrate.co/v1", "widgets", "default", "w1", {"spec": {"currency": "x"}})
    assert error.value.status == 422
    deleted = sandbox.delete_object("test.fluxrate.co/v1", "widgets", "default", "w1")
    assert deleted["metadata"]["deletionTimestamp"]
    sandbox.patch_object("test.fluxrate.co/v1", "widgets", "default", "w1", {"metadata": {"finalizers": None}})
    assert sandbox.get_object("test.fluxrate.co/v1", "widgets", "default", "w1") is None


async def test_status_writes_are_validated(api: aiohttp.ClientSession, widgets: str) -> None:
    await create(api, widgets, widget("w1"))
    status, body = await call(api, "PATCH", f"{widgets}/w1/status", {"status": {"phase": "Bogus"}}, MERGE)
    assert status == 422
    message = 'Unsupported value: "Bogus": supported values: "Pending", "Ready"'
    # A blocking schema error (enum, required, type, too long/many) stops the CRD's CEL rules, and says so.
    assert body["details"]["causes"] == [
        {"reason": "FieldValueNotSupported", "field": "status.phase", "message": message},
        {"reason": "FieldValueInvalid", "field": "<nil>", "message": "Invalid value: null: some validation rules were "
         "not checked because the object was invalid; correct the existing errors to complete validation"}]


async def test_strategic_merge_patch_merges_owner_references_and_finalizers(api: aiohttp.ClientSession,
                                                                           kube: Backend) -> None:
    """Built-in kinds merge lists by their patchMergeKey: ownerReferences by uid, finalizers as a set (patch items
    first), with the $patch/$deleteFromPrimitiveList directives; other lists are replaced."""
    configmaps = f"/api/v1/namespaces/{kube.namespace}/configmaps"
    owners = [await create(api, configmaps, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"o{n}"}})
              for n in range(3)]

    def ref(n: int, **extra: str) -> dict[str, str]:
        return {"apiVersion": "v1", "kind": "ConfigMap", "name": f"o{n}", "uid": owners[n]["metadata"]["uid"], **extra}

    url = f"{configmaps}/held"
    await create(api, configmaps, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": "held", "finalizers": ["a/x"], "ownerReferences": [ref(0)]}})

    async def smp(metadata: dict[str, Any]) -> tuple[list[str], list[str]]:
        status, obj = await call(api, "PATCH", url, {"metadata": metadata}, SMP)
        assert status == 200, obj
        return obj["metadata"].get("finalizers", []), [r["name"] for r in obj["metadata"].get("ownerReferences", [])]

    assert await smp({"finalizers": ["b/y"], "ownerReferences": [ref(1), ref(0, name="o0-renamed")]}) == (
        ["b/y", "a/x"], ["o1", "o0-renamed"])
    assert await smp({"$deleteFromPrimitiveList/finalizers": ["a/x"], "ownerReferences": [
        {"uid": owners[1]["metadata"]["uid"], "$patch": "delete"}]}) == (["b/y"], ["o0-renamed"])
    assert await smp({"finalizers": ["c/z", "b/y"]}) == (["c/z", "b/y"], ["o0-renamed"])
    assert await smp({"ownerReferences": [{"$patch": "replace"}, ref(2)]}) == (["c/z", "b/y"], ["o2"])
    assert await smp({"finalizers": None}) == ([], ["o2"])
    status, body = await call(api, "PATCH", url, {"metadata": {"ownerReferences": [{"name": "no-uid"}]}}, SMP)
    assert status == 500 and body["message"] == "map: map[name:no-uid] does not contain declared merge key: uid"


def _crd(plural: str, spec_schema: dict[str, Any],
         root_rules: list[dict[str, str]] | None = None) -> dict[str, Any]:
    root: dict[str, Any] = {"type": "object", "properties": {"spec": spec_schema}}
    if root_rules:
        root["x-kubernetes-validations"] = root_rules
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                     "names": {"plural": plural, "kind": plural.capitalize()[:-1]},
                     "versions": [{"name": "v1", "served": True, "storage": True,
                                   "schema": {"openAPIV3Schema": root}}]}}


async def _create_crd(api: aiohttp.ClientSession, kube: Backend, crd: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """POST a CRD; the real backend's session cluster gets it removed again at once."""
    url = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    status, body = await call(api, "POST", url, crd)
    if status == 201 and kube.real:
        await call(api, "DELETE", f"{url}/{crd['metadata']['name']}")
        await kube.wait_gone(f"{url}/{crd['metadata']['name']}")
    return status, body


async def test_difference_crd_defaults_are_not_checked_against_cel_rules(api: aiohttp.ClientSession,
                                                                         kube: Backend) -> None:
    """Pinned difference: the real server validates a CRD's `default` values, CEL rules included, when the CRD is
    created (a `default: {}` whose rule reads a missing key is refused); the emulator accepts the CRD."""
    crd = _crd("defaulteds", {"type": "object", "properties": {"opts": {
        "type": "object", "default": {}, "properties": {"mode": {"type": "string", "maxLength": 8}},
        "x-kubernetes-validations": [{"rule": "self.mode == 'a'"}]}}})
    status, body = await _create_crd(api, kube, crd)
    if kube.real:
        assert status == 422 and "default" in body["message"], body
    else:
        assert status == 201, body


async def test_difference_cel_cost_is_not_estimated(api: aiohttp.ClientSession, kube: Backend) -> None:
    """Pinned difference: the real server estimates each rule's worst-case cost from maxItems/maxLength and refuses
    a CRD over the budget; the emulator never estimates."""
    crd = _crd("costlies", {"type": "object", "properties": {"names": {"type": "array", "items": {"type": "string"}}},
                            "x-kubernetes-validations": [{"rule": "self.names.all(a, self.names.all(b, "
                                                          "a == b || !a.matches(b)))"}]})
    status, body = await _create_crd(api, kube, crd)
    if kube.real:
        assert status == 422 and "cost" in body["message"], body
    else:
        assert status == 201, body


async def test_root_cel_rules_see_metadata_name(api: aiohttp.ClientSession, kube: Backend) -> None:
    crd = _crd("things", {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
               [{"rule": "self.metadata.name.startsWith('t-')", "message": "names start with t-"}])
    await kube.apply_crds([crd])
    url = f"/apis/example.com/v1/namespaces/{kube.namespace}/things"
    try:
        await create(api, url, {"apiVersion": "example.com/v1", "kind": "Thing", "metadata": {"name": "t-1"}})
        status, body = await call(api, "POST", url, {"apiVersion": "example.com/v1", "kind": "Thing",
                                                     "metadata": {"name": "x-1"}})
        assert status == 422
        assert body["message"] == ('Thing.example.com "x-1" is invalid: <nil>: Invalid value: "object": '
                                   "names start with t-")
    finally:
        if kube.real:
            await call(api, "DELETE", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/things.example.com")
