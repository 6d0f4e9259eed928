"""The operator's reconciliation schedule (which invoices its per-integration daemon reconciles, and when) and its
per-object locks, which are forgotten once nobody holds them."""

from __future__ import annotations

import asyncio
from typing import Any

from fluxrate.operator.schedule import KeyedLocks, ReconcileSchedule, needs_reconciliation


def body(name: str, phase: str = "Open", integration: str = "prod", active: bool = True) -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": name}, "spec": {"integrationRef": {"name": integration}},
            "status": {"phase": phase, "paymentLink": {"id": "plink_1", "active": active}}}


def test_needs_reconciliation_open_or_paid_with_an_active_link() -> None:
    assert needs_reconciliation(body("a")["status"])
    assert needs_reconciliation(body("a", "Paid")["status"])
    assert not needs_reconciliation(body("a", "Paid", active=False)["status"])
    assert not needs_reconciliation({"phase": "Draft"})
    assert not needs_reconciliation({})


def test_first_run_at_first_sight_then_after_each_run() -> None:
    schedule = ReconcileSchedule()
    schedule.update("ns", "a", body("a"), first_at=10.0)
    schedule.update("ns", "a", body("a", "Paid"), first_at=99.0)  # a newer version keeps the due time
    assert schedule.next_at("ns", "prod") == 10.0
    assert schedule.take_due("ns", "prod", 9.0) == []
    assert schedule.take_due("ns", "prod", 10.0) == [body("a", "Paid")]
    assert schedule.take_due("ns", "prod", 11.0) == []  # running: not due again until rescheduled
    schedule.reschedule("ns", "a", 610.0)
    assert schedule.next_at("ns", "prod") == 610.0
    assert schedule.names("ns", "other") == frozenset()


def test_dropped_when_no_longer_needed_and_moved_with_its_integration() -> None:
    schedule = ReconcileSchedule()
    schedule.update("ns", "a", body("a"), first_at=10.0)
    schedule.update("ns", "b", body("b"), first_at=20.0)
    schedule.update("ns", "a", body("a", integration="staging"), first_at=99.0)
    assert schedule.names("ns", "prod") == {"b"} and schedule.names("ns", "staging") == {"a"}
    assert schedule.next_at("ns", "staging") == 10.0
    schedule.update("ns", "a", None, first_at=0.0)
    schedule.drop("ns", "b")
    schedule.reschedule("ns", "b", 5.0)  # finished after it was dropped: nothing to do
    assert schedule.names("ns", "prod") == frozenset() and schedule.names("ns", "staging") == frozenset()
    assert schedule.next_at("ns", "prod") == float("inf")
    assert not schedule._by_integration and not schedule._keys


async def test_a_newly_filed_invoice_wakes_its_integrations_daemon() -> None:
    schedule = ReconcileSchedule()
    with schedule.watching("ns", "prod") as filed:
        schedule.update("ns", "a", body("a", integration="staging"), first_at=1.0)
        assert not filed.is_set()
        schedule.update("ns", "b", body("b"), first_at=1.0)
        assert filed.is_set()
        filed.clear()
        schedule.update("ns", "b", body("b"), first_at=1.0)  # already filed
        assert not filed.is_set()
    assert not schedule._changed


async def test_keyed_locks_exclude_per_key_and_are_forgotten_when_free() -> None:
    locks = KeyedLocks()
    order: list[str] = []

    async def hold(key: str, tag: str) -> None:
        async with locks("invoice", "ns", key):
            order.append(f"{tag}+")
            await asyncio.sleep(0.01)
            order.append(f"{tag}-")

    await asyncio.gather(hold("a", "1"), hold("a", "2"), hold("b", "3"))
    assert order.index("1-") < order.index("2+")  # same key: one at a time
    assert order.index("3+") < order.index("1-")  # another key: not held up
    assert len(locks) == 0


def test_dunning_due_times_are_wall_clock_held_while_running_and_backed_off() -> None:
    schedule = ReconcileSchedule()
    schedule.update("ns", "a", body("a"), first_at=10.0, dunning_at=1000.0)  # Open: reconciled and dunned
    schedule.update("ns", "f", body("f", "Finalized"), first_at=10.0, reconcile=False, dunning_at=2000.0)
    assert schedule.names("ns", "prod") == {"a", "f"}
    assert schedule.take_due("ns", "prod", 99.0) == [body("a")]  # only the one kept for reconciliation
    assert schedule.take_dunning("ns", "prod", wall=999.0, now=0.0) == []
    assert schedule.take_dunning("ns", "prod", wall=1000.0, now=0.0) == ["a"]
    assert schedule.take_dunning("ns", "prod", wall=5000.0, now=0.0) == ["f"]  # "a" runs: not taken twice
    schedule.reschedule_dunning("ns", "a", 1000.0, hold=50.0)  # SMTP refused: retry after a backoff
    assert schedule.take_dunning("ns", "prod", wall=5000.0, now=49.0) == []
    assert schedule.next_wait("ns", "prod", now=49.0, wall=5000.0) == 1.0
    assert schedule.take_dunning("ns", "prod", wall=5000.0, now=50.0) == ["a"]
    schedule.reschedule_dunning("ns", "f", None)  # nothing more until it changes: not kept at all
    assert schedule.names("ns", "prod") == {"a"}


def test_a_changed_policy_replans_the_invoices_kept_and_a_clock_move_wakes_the_daemons() -> None:
    schedule = ReconcileSchedule()
    schedule.update("ns", "a", body("a"), first_at=10.0)
    schedule.update("ns", "f", body("f", "Finalized"), first_at=10.0, reconcile=False, dunning_at=2000.0)
    schedule.set_policy("ns", "prod", "new policy", lambda b: 3000.0 if b["metadata"]["name"] == "a" else None)
    assert schedule.policy("ns", "prod") == "new policy"
    assert schedule.next_wait("ns", "prod", now=10.0, wall=0.0) == 0.0  # a's reconciliation
    assert schedule.take_dunning("ns", "prod", wall=2500.0, now=0.0) == ["f"]  # its due time is its own
    assert schedule.take_dunning("ns", "prod", wall=3000.0, now=0.0) == ["a"]
    schedule.set_policy("ns", "prod", None, lambda b: None)
    assert schedule.policy("ns", "prod") is None


async def test_wake_all_sets_every_daemons_event_from_another_thread() -> None:
    schedule = ReconcileSchedule()
    with schedule.watching("ns", "prod") as prod, schedule.watching("ns", "staging") as staging:
        await asyncio.to_thread(schedule.wake_all)
        await asyncio.wait_for(asyncio.gather(prod.wait(), staging.wait()), 1.0)
