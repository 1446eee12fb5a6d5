"""Pauses and quiet windows: held or not at a given time, and until when."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from vsphere_preemption.domain.pauses import Pause, hold_for, pause_problem, quiet_windows
from vsphere_preemption.domain.policy import Policy, PolicyError

SATURDAY_2230_BERLIN = datetime(2026, 12, 5, 21, 30, tzinfo=UTC)


def windows(*raw: dict[str, object]) -> tuple:  # type: ignore[type-arg]
    found, problems = quiet_windows(list(raw))
    assert problems == []
    return found


def test_a_window_across_midnight_holds_until_its_end_the_next_day_in_its_zone() -> None:
    night = windows(
        {"days": ["sat"], "start": "22:00", "end": "02:00", "timeZone": "Europe/Berlin"}
    )
    hold = hold_for(SATURDAY_2230_BERLIN, [], night, "cpu", "domain-c7")
    assert hold is not None and hold.source == "quiet"
    assert hold.until == datetime(2026, 12, 6, 1, 0, tzinfo=UTC)  # 02:00 in Berlin, in winter
    assert hold.status().startswith("paused until 2026-12-06T01:00:00Z: quiet window sat")
    assert hold_for(SATURDAY_2230_BERLIN + timedelta(hours=4), [], night, "cpu", None) is None
    # Friday night is not Saturday night.
    assert hold_for(SATURDAY_2230_BERLIN - timedelta(days=1), [], night, "cpu", None) is None


def test_a_window_follows_the_wall_clock_across_summer_time() -> None:
    sunday = windows({"days": "sun", "start": "01:00", "end": "05:00", "timeZone": "Europe/Berlin"})
    # 2026-03-29: clocks go from 02:00 to 03:00; 05:00 local is 03:00 UTC, not 04:00.
    hold = hold_for(datetime(2026, 3, 29, 0, 30, tzinfo=UTC), [], sunday, "cpu", None)
    assert hold is not None and hold.until == datetime(2026, 3, 29, 3, 0, tzinfo=UTC)


def test_pauses_cover_everything_an_alarm_or_one_entity_and_expire() -> None:
    now = SATURDAY_2230_BERLIN
    everything = Pause("upgrade", until=now + timedelta(hours=1))
    alarm = Pause("noisy", alarm="cpu")
    entity = Pause("migration", alarm="cpu", entity="domain-c7", until=now + timedelta(hours=3))
    assert hold_for(now, [everything], (), "mem", "domain-c9") is not None
    assert hold_for(now + timedelta(hours=1), [everything], (), "mem", None) is None  # expired
    assert hold_for(now, [alarm], (), "mem", None) is None
    held = hold_for(now, [alarm, entity], (), "cpu", "domain-c7")
    assert held is not None and held.until is None  # an open-ended pause wins: no end known
    assert hold_for(now, [entity], (), "cpu", "domain-c8") is None
    only = hold_for(now, [entity, everything], (), "cpu", "domain-c7")
    assert only is not None and only.until == now + timedelta(hours=3)  # the latest end
    assert only.reason == "migration (paused: alarm cpu on domain-c7); upgrade (paused: everything)"


def test_a_pause_round_trips_and_bad_ones_are_named() -> None:
    pause = Pause("x", alarm="cpu", entity="domain-c7", since=SATURDAY_2230_BERLIN, by="ops")
    assert Pause.from_wire(pause.to_wire()) == pause
    assert pause_problem(None, "domain-c7", "x") is not None
    assert pause_problem("cpu", None, " ") is not None
    assert pause_problem("cpu", None, "upgrade") is None


def test_the_policy_reads_quiet_windows_and_names_every_bad_field() -> None:
    policy = Policy.from_wire({"quiet": [{"days": ["mon-fri"], "start": "00:00", "end": "24:00"}]})
    assert policy.quiet[0].days == (0, 1, 2, 3, 4)
    assert Policy.from_wire(policy.to_wire()) == policy
    with pytest.raises(PolicyError) as raised:
        Policy.from_wire(
            {"quiet": [{"days": ["someday"], "start": "2am", "end": "06:00", "timeZone": "Mars"}]}
        )
    text = str(raised.value)
    for field in ("quiet[0].days", "quiet[0].start", "quiet[0].timeZone"):
        assert field in text
