"""The pure link-status functions of fluxrate/operator/invoices/links.py, one behaviour per test: `make mutate`
runs these (and only these) against each mutant of that module (docs/testing.md). The Reconciler's parts, the
email send and its once-per-link guard included, are judged by tests/operator on the sandbox."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fluxrate.operator import invoices


def link(link_id: str, **fields: Any) -> dict[str, Any]:
    return {"id": link_id, "url": f"https://buy.stripe.com/{link_id}", **fields}


# --- link_history ---------------------------------------------------------------------------------------------

def test_history_of_an_invoice_without_links_is_empty() -> None:
    assert invoices.link_history({}) == []
    assert invoices.link_history({"paymentLink": {}, "paymentLinks": None}) == []
    assert invoices.link_history({"paymentLink": {"url": "x"}}) == []  # no id: not a link


def test_a_status_from_before_the_history_gets_its_current_link_as_attempt_one() -> None:
    assert invoices.link_history({"paymentLink": link("plink_1")}) == [link("plink_1", attempt=1)]


def test_the_current_link_ends_the_history_once_and_keeps_its_attempt() -> None:
    status = {
        "paymentLinks": [link("plink_1", attempt=1), "junk", link("plink_2", attempt=2, active=True)],
        "paymentLink": link("plink_2", attempt=2, active=True, reason="expired"),
    }
    assert invoices.link_history(status) == [
        link("plink_1", attempt=1), link("plink_2", attempt=2, active=True, reason="expired"),
    ]


def test_a_current_link_missing_from_the_history_is_appended_with_the_next_attempt() -> None:
    status = {"paymentLinks": [link("plink_1", attempt=1), link("plink_2", attempt=2)], "paymentLink": link("plink_3")}
    assert [entry["attempt"] for entry in invoices.link_history(status)] == [1, 2, 3]
    assert invoices.link_history(status)[-1]["id"] == "plink_3"


def test_history_entries_are_copies() -> None:
    entry = link("plink_1", attempt=1)
    history = invoices.link_history({"paymentLinks": [entry]})
    history[0]["active"] = False
    assert "active" not in entry


def test_without_a_current_link_the_history_is_kept_as_is() -> None:
    entries = [link("plink_1", attempt=1), link("plink_2", attempt=2)]
    assert invoices.link_history({"paymentLinks": entries}) == entries


# --- active_links ---------------------------------------------------------------------------------------------

def test_active_links_are_those_not_known_to_be_deactivated() -> None:
    status = {
        "paymentLinks": [link("a", active=False), link("b"), link("c", active=True), link("d", active=None)],
    }
    assert [entry["id"] for entry in invoices.active_links(status)] == ["b", "c", "d"]


# --- with_link -----------------------------------------------------------------------------------------------

def test_with_link_puts_the_updated_link_in_both_places() -> None:
    status = {"paymentLinks": [link("plink_1", attempt=1)], "paymentLink": link("plink_2", attempt=2)}
    updated = link("plink_2", attempt=2, checkedError="evt_1")
    assert invoices.with_link(status, updated) == {
        "paymentLink": updated,
        "paymentLinks": [link("plink_1", attempt=1), updated],
    }


# --- with_links_inactive -------------------------------------------------------------------------------------

def test_links_marked_inactive_in_the_history_and_the_current_one() -> None:
    status = {"paymentLinks": [link("plink_1", attempt=1)], "paymentLink": link("plink_2", attempt=2)}
    assert invoices.with_links_inactive(status, {"plink_1", "plink_2"}) == {
        "paymentLinks": [link("plink_1", attempt=1, active=False), link("plink_2", attempt=2, active=False)],
        "paymentLink": link("plink_2", attempt=2, active=False),
    }


def test_an_old_link_marked_inactive_leaves_the_current_one_alone() -> None:
    status = {"paymentLinks": [link("plink_1", attempt=1)], "paymentLink": link("plink_2", attempt=2)}
    assert invoices.with_links_inactive(status, {"plink_1"}) == {
        "paymentLinks": [link("plink_1", attempt=1, active=False), link("plink_2", attempt=2)],
    }


def test_no_current_link_no_current_link_written() -> None:
    assert invoices.with_links_inactive({"paymentLinks": [link("a", attempt=1)]}, {"a"}) == {
        "paymentLinks": [link("a", attempt=1, active=False)],
    }


# --- wants_link_work -----------------------------------------------------------------------------------------

OPEN = {"phase": "Open", "paymentLink": link("plink_2", attempt=2), "paymentLinks": [link("plink_1", attempt=1,
                                                                                            active=False)]}


def test_an_open_invoice_with_only_its_current_link_active_needs_nothing() -> None:
    assert invoices.wants_link_work(OPEN) is False


@pytest.mark.parametrize("phase", ["Paid", "Void", "Draft", None])
def test_only_open_invoices_want_link_work(phase: str | None) -> None:
    status = {**OPEN, "phase": phase, "linkRequest": {"replacesLinkId": "plink_2"}}
    assert invoices.wants_link_work(status) is False


def test_an_open_invoice_without_a_link_wants_nothing_yet() -> None:
    status = {"phase": "Open", "linkRequest": {"replacesLinkId": "plink_2"}, "paymentLinks": [link("x")]}
    assert invoices.wants_link_work(status) is False
    assert invoices.wants_link_work({**status, "paymentLink": {"url": "no id"}}) is False


def test_a_renewal_under_way_wants_link_work() -> None:
    assert invoices.wants_link_work({**OPEN, "linkRequest": {"replacesLinkId": "plink_2"}}) is True
    assert invoices.wants_link_work({**OPEN, "linkRequest": {"replacesLinkId": ""}}) is False
    assert invoices.wants_link_work({**OPEN, "linkRequest": None}) is False


def test_a_payment_failure_not_checked_against_the_current_link_wants_link_work() -> None:
    failed = {**OPEN, "lastPaymentError": {"eventId": "evt_1"}}
    assert invoices.wants_link_work(failed) is True


def test_a_payment_failure_already_checked_against_the_current_link_does_not() -> None:
    checked = {**OPEN, "paymentLink": link("plink_2", attempt=2, checkedError="evt_1"),
               "lastPaymentError": {"eventId": "evt_1"}}
    assert invoices.wants_link_work(checked) is False
    newer = {**checked, "lastPaymentError": {"eventId": "evt_2"}}
    assert invoices.wants_link_work(newer) is True


def test_a_payment_failure_waits_while_a_payment_is_pending() -> None:
    failed = {**OPEN, "lastPaymentError": {"eventId": "evt_1"}, "pendingPayment": {"intentId": "pi_1"}}
    assert invoices.wants_link_work(failed) is False


def test_a_payment_error_without_an_event_id_wants_nothing() -> None:
    assert invoices.wants_link_work({**OPEN, "lastPaymentError": {"message": "declined"}}) is False
    assert invoices.wants_link_work({**OPEN, "lastPaymentError": None}) is False


def test_a_replaced_link_still_active_wants_link_work() -> None:
    status = {**OPEN, "paymentLinks": [link("plink_1", attempt=1)]}
    assert invoices.wants_link_work(status) is True


# --- jitter_delay --------------------------------------------------------------------------------------------

def test_no_first_reconciliation_runs_in_the_first_tenth_of_the_interval() -> None:
    # issue 19: at 200 invoices the names ending 0148 and 0149 got 0 s and 3.6 s of an hour, so their first pass
    # ran during the chaos storm; a pass that early cannot find a payment and only spends Stripe budget
    delays = [invoices.jitter_delay(3600.0, f"inv-{n:04d}") for n in range(2000)]
    assert min(delays) >= 360.0 and max(delays) < 3600.0
    assert invoices.jitter_delay(3600.0, "inv-0148") >= 360.0 and invoices.jitter_delay(3600.0, "inv-0149") >= 360.0
    assert invoices.jitter_delay(0.0, "inv-0001") == 0.0


def test_first_passes_are_spread_over_the_rest_of_the_interval_by_the_whole_name() -> None:
    delays = [invoices.jitter_delay(1000.0, f"inv-{n:04d}") for n in range(2000)]
    tenths = [sum(1 for d in delays if 100 + 90 * k <= d < 100 + 90 * (k + 1)) for k in range(10)]
    assert all(150 <= count <= 250 for count in tenths), tenths  # about 200 in each tenth of the spread
    # the same name is always due at the same offset; names differing only early on differ too
    assert invoices.jitter_delay(1000.0, "a-inv-1") == invoices.jitter_delay(1000.0, "a-inv-1")
    assert invoices.jitter_delay(1000.0, "a-inv-1") != invoices.jitter_delay(1000.0, "b-inv-1")
    assert invoices.jitter_delay(2000.0, "a-inv-1") == 2 * invoices.jitter_delay(1000.0, "a-inv-1")


# --- statuses as read from the API server (parsed JSON: no string is the very object of another) -------------

def parsed(value: Any) -> Any:
    return json.loads(json.dumps(value))


def test_a_current_link_after_one_older_link_is_attempt_two() -> None:
    status = {"paymentLinks": [link("plink_1", attempt=1)], "paymentLink": link("plink_2")}
    assert [entry["attempt"] for entry in invoices.link_history(status)] == [1, 2]


def test_with_link_finds_the_link_by_equal_id_in_a_parsed_status() -> None:
    status = parsed({"paymentLinks": [link("plink_1", attempt=1)], "paymentLink": link("plink_1", attempt=1)})
    updated = parsed(link("plink_1", attempt=1, checkedError="evt_1"))
    assert invoices.with_link(status, updated)["paymentLinks"] == [updated]


@pytest.mark.parametrize("old_id", ["plink_1", "plink_9"])
def test_an_older_active_link_wants_link_work_in_a_parsed_status(old_id: str) -> None:
    only_current = parsed({"phase": "Open", "paymentLink": link("plink_5"), "paymentLinks": [link("plink_5")]})
    assert invoices.wants_link_work(only_current) is False
    with_old = parsed({"phase": "Open", "paymentLink": link("plink_5"),
                       "paymentLinks": [link(old_id), link("plink_5")]})
    assert invoices.wants_link_work(with_old) is True


def test_with_link_replaces_only_the_link_of_that_id() -> None:
    status = parsed({"paymentLinks": [link("plink_9", attempt=1)], "paymentLink": link("plink_2", attempt=2)})
    updated = parsed(link("plink_2", attempt=2, checkedError="evt_1"))
    assert invoices.with_link(status, updated)["paymentLinks"] == [link("plink_9", attempt=1), updated]


def test_a_failure_already_checked_wants_nothing_in_a_parsed_status() -> None:
    checked = parsed({"phase": "Open", "paymentLink": link("plink_2", checkedError="evt_1"),
                      "paymentLinks": [link("plink_2")], "lastPaymentError": {"eventId": "evt_1"}})
    assert invoices.wants_link_work(checked) is False
