"""Product bugs the chaos suite found, each pinned by a focused test."""

from __future__ import annotations

from pathlib import Path

from fluxrate.operator.handlers import INTEGRATION_READY_ANNOTATION
from fluxrate.webhook_receiver.processing import parse_event
from fluxrate_sandbox.chaos.emails import KillWindows, email_figures
from fluxrate_sandbox.chaos.outcome import Outcome
from fluxrate_sandbox.chaos.stack import Evidence, chaos_stack, header_id, invoice_manifest


def test_a_deeply_nested_body_is_not_an_event_rather_than_an_internal_error() -> None:
    """Found by the hostile-input scenario: a validly signed body of 100 000 nested arrays made ``json.loads``
    raise RecursionError, which the receiver answered with a 500 (Stripe would redeliver it for days)."""
    depth = 100_000
    assert parse_event(b"[" * depth + b"]" * depth) is None
    assert parse_event(b'{"id": "evt_1", "type": "x", "data": ' + b"[" * depth + b"]" * depth + b"}") is None


async def test_operator_killed_right_after_the_smtp_server_accepted_the_email_resends_it_under_one_message_id(
    tmp_path: Path,
) -> None:
    """The email contract (at-least-once, one stable Message-ID per link), measured as the chaos suite measures it.

    The operator emails the link, then records notification.sentAt. Killed between the SMTP server's acceptance and
    that status write, the restarted operator sends the email again, under the same Message-ID: ``KillWindows``
    counts that kill, and the one extra email is within the allowance. (SMTP has no idempotency; at-most-once
    instead would lose emails.)"""
    async with chaos_stack(tmp_path / "stack", Evidence(), log_level="INFO") as stack:
        tenant = await stack.tenant("finding-email")
        windows = KillWindows(stack, tenant.namespace)
        # The invoice's status writes: Finalized, Open, then the record of the email. The third one fails, so the
        # kill below always lands before the record (without it, whether it did was a race). The operator's retry
        # of that write waits 10 s (retry_delay): the kill comes first.
        stack.sandbox.kube.faults.fail_always(503, verb="patch", resource="invoices", subresource="status",
                                              namespace=tenant.namespace, after=2)
        (name,) = stack.create_invoices(tenant, 1)
        await stack.sandbox.smtp.wait_for(1, timeout=60)
        await stack.operator.kill()  # SIGKILL before the operator could record that it sent the email
        assert windows.after_kill() == 1
        stack.sandbox.kube.faults.clear()
        await stack.operator.start()
        await stack.until("the invoice to be Open and emailed", lambda: bool(stack.finalized(tenant.namespace, [name])),
                          60)
        invoice = stack.invoice(tenant.namespace, name)
        message_ids = [header_id(m.message) for m in stack.sandbox.smtp.messages]
        outcome = Outcome("finding-email", "the kill between acceptance and status write")
        email_figures(stack, [invoice], windows.count, outcome)
    assert set(message_ids) == {invoice["status"]["notification"]["messageId"]}
    assert len(message_ids) == 2  # sent, killed before the record, sent again: one extra, one window
    assert outcome.figures["extra emails (same Message-ID)"] == 1
    assert outcome.checks == {"every link emailed at least once": True,
                              "all emails of a link share its one Message-ID": True,
                              "no receipt or reminder email but those due, each under its one Message-ID": True,
                              "extra emails no more than kills between SMTP acceptance and status write": True}


async def test_an_invoice_poked_by_a_killed_operator_is_still_woken_by_the_next_one(tmp_path: Path) -> None:
    """Found by the operator-crash scenario (4 of 100 invoices stuck in Finalized/IntegrationNotReady for good).

    The operator wakes invoices waiting for their integration by annotating them with the integration's
    resourceVersion. A process killed right after that poke, before the invoice got its link, leaves the annotation
    behind; the next process handles the invoice before its own Stripe client is connected (IntegrationNotReady,
    wait for a poke), then pokes it with the same, unchanged resourceVersion: a no-op patch, no watch event, and
    the invoice waits forever."""
    async with chaos_stack(tmp_path / "stack", Evidence(), log_level="INFO") as stack:
        tenant = await stack.tenant("finding-poke")
        await stack.operator.kill()
        integration_version = (stack.integration(tenant.namespace, tenant.integration) or {})["metadata"][
            "resourceVersion"]
        body = invoice_manifest(tenant, "inv-poked")
        body["metadata"]["annotations"] = {INTEGRATION_READY_ANNOTATION: integration_version}  # the killed one's poke
        stack.sandbox.kube.create_object(body)
        stack.sandbox.stripe.set_faults(latency_s=2.0)  # the new process connects slowly, after the invoice waits
        await stack.operator.start()
        await stack.until("the invoice to wait for its integration", lambda: (
            stack.invoice(tenant.namespace, "inv-poked").get("status") or {}).get("phase") == "Finalized", 60)
        stack.sandbox.stripe.reset_faults()
        await stack.until("the invoice to be Open and emailed",
                          lambda: bool(stack.finalized(tenant.namespace, ["inv-poked"])), 60)
