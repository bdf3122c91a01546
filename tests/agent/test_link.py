"""The link state machine: up_when rules, availability counting, outages."""

from __future__ import annotations

import pytest

from agent.link import LinkCounters, LinkState, link_holds

ROLES = {"gw": "gateway", "pop1": "pop", "pop2": "pop", "net": "internet"}


@pytest.mark.parametrize(
    ("rule", "results", "up"),
    [
        ("any", {"gw": True, "pop1": False, "pop2": False, "net": False}, True),
        ("any", {"gw": False, "pop1": False, "pop2": False, "net": False}, False),
        ("all", {"gw": True, "pop1": True, "pop2": True, "net": True}, True),
        ("all", {"gw": True, "pop1": True, "pop2": False, "net": True}, False),
        (("pop", "internet"), {"gw": False, "pop1": False, "pop2": True, "net": True}, True),
        (("pop", "internet"), {"gw": True, "pop1": True, "pop2": True, "net": False}, False),
        (("pop",), {"gw": False, "pop1": False, "pop2": True, "net": False}, True),
        (("pop",), {"gw": True, "pop1": False, "pop2": False, "net": True}, False),
        (("gateway",), {"gw": True, "pop1": False, "pop2": False, "net": False}, True),
    ],
)
def test_up_when_rules(rule: str | tuple[str, ...], results: dict[str, bool], up: bool) -> None:
    assert link_holds(rule, results, ROLES) is up


def make(rule: str | tuple[str, ...] = "any", counters: LinkCounters | None = None) -> LinkState:
    state = LinkState(rule=rule, roles={}, counters=counters or LinkCounters())
    state.configure(rule, {"a": "gateway", "b": "internet"}, now=0.0, wall=1000.0)
    return state


def test_unknown_until_every_target_reported() -> None:
    state = make("all")
    assert state.observe("a", True, 1.0, 1001.0) is None
    assert state.up is None
    assert state.observe("b", True, 2.0, 1002.0) is True
    assert state.up is True
    assert state.counters.up_seconds == 0.0  # unknown time counts neither way
    assert state.counters.last_change == 1002.0


def test_counts_up_down_and_outages() -> None:
    state = make("any")
    state.observe("a", True, 0.0, 1000.0)
    state.observe("b", True, 0.0, 1000.0)
    state.observe("a", False, 10.0, 1010.0)
    assert state.up is True
    assert state.observe("b", False, 12.0, 1012.0) is False
    assert state.counters.outages == 1
    assert state.counters.last_change == 1012.0
    state.advance(20.0)
    assert state.observe("a", True, 30.0, 1030.0) is True
    state.advance(35.0)
    assert state.counters.up_seconds == pytest.approx(12.0 + 5.0)
    assert state.counters.down_seconds == pytest.approx(18.0)
    assert state.counters.outages == 1
    assert state.counters.last_change == 1030.0


def test_restored_state_decides_whether_a_start_is_an_outage() -> None:
    was_up = make("any", LinkCounters(outages=3, last_state=True, last_change=500.0))
    was_up.observe("a", False, 1.0, 1001.0)
    was_up.observe("b", False, 1.0, 1001.0)
    assert was_up.counters.outages == 4
    assert was_up.counters.last_change == 1001.0

    was_down = make("any", LinkCounters(outages=3, last_state=False, last_change=500.0))
    was_down.observe("a", False, 1.0, 1001.0)
    was_down.observe("b", False, 1.0, 1001.0)
    assert was_down.counters.outages == 3
    assert was_down.counters.last_change == 500.0  # no change since before the restart


def test_reconfigure_drops_removed_targets_and_reevaluates() -> None:
    state = make("all")
    state.observe("a", True, 0.0, 1000.0)
    state.observe("b", False, 0.0, 1000.0)
    assert state.up is False
    state.configure("all", {"a": "gateway"}, now=5.0, wall=1005.0)
    assert state.up is True
    assert set(state.results) == {"a"}
    assert state.observe("b", True, 6.0, 1006.0) is None  # no longer a target


def test_clock_going_backwards_adds_nothing() -> None:
    state = make("any")
    state.observe("a", True, 10.0, 1000.0)
    state.observe("b", True, 10.0, 1000.0)
    state.advance(5.0)
    assert state.counters.up_seconds == 0.0
