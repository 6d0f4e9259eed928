import datetime as dt

from fluxrate import conditions as c

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
T1 = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)


def test_transition_time_moves_only_when_status_changes() -> None:
    first = c.merge([], [c.Condition("Ready", "False", "Waiting", "wait")], generation=1, moment=T0)
    same = c.merge(first, [c.Condition("Ready", "False", "StillWaiting", "still")], generation=2, moment=T1)
    flipped = c.merge(same, [c.Condition("Ready", "True", "Connected", "ok")], generation=2, moment=T1)
    assert same[0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert same[0]["reason"] == "StillWaiting" and same[0]["observedGeneration"] == 2
    assert flipped[0]["lastTransitionTime"] == "2026-01-02T00:00:00Z"


def test_ready_is_listed_first() -> None:
    result = c.merge([], [c.Condition("Other", "True", "X", "x"), c.Condition("Ready", "True", "Y", "y")], generation=1)
    assert [x["type"] for x in result] == ["Ready", "Other"]


def test_kstatus_conditions_present_only_while_true() -> None:
    ready = c.Condition("Ready", "False", "InvalidSecretKey", "fix the key")
    stalled = c.with_kstatus([], ready, generation=3, stalled=True)
    assert c.is_true(stalled, "Stalled") and c.get(stalled, "Reconciling") is None
    healed = c.with_kstatus(stalled, c.Condition("Ready", "True", "Connected", "ok"), generation=3)
    assert [x["type"] for x in healed] == ["Ready"]
