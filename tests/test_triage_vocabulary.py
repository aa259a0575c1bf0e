"""The shared triage vocabulary: each action has a wire segment, and a bug's state shows exactly
the actions whose effect it carries."""

from __future__ import annotations

from testio_mirror.triage import TRIAGE_ACTIONS, WIRE_SEGMENT, TriageState


def test_every_action_has_its_own_put_segment() -> None:
    assert set(WIRE_SEGMENT) == set(TRIAGE_ACTIONS)
    assert len(set(WIRE_SEGMENT.values())) == len(TRIAGE_ACTIONS)


def test_a_forwarded_bug_shows_no_action() -> None:
    state = TriageState.of_bug({"status": "forwarded", "known": False, "exported_at": None})
    assert [action for action in TRIAGE_ACTIONS if state.shows(action)] == []


def test_each_flag_shows_its_own_action_only() -> None:
    bug = {
        "status": "rejected",
        "known": True,
        "fixed_at": "2026-12-01T00:00:00Z",
        "exported_at": None,
    }
    state = TriageState.of_bug(bug)
    assert [a for a in TRIAGE_ACTIONS if state.shows(a)] == ["reject", "mark_known", "mark_fixed"]
    assert TriageState.of_bug({**bug, "status": "accepted"}).shows("accept")


def test_odd_types_read_as_absent() -> None:
    state = TriageState.of_bug({"status": 3, "known": "yes"})
    assert state == TriageState(status=None, known=False, fixed=False, exported=False)
