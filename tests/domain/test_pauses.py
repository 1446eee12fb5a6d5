"""Pauses and quiet windows: held or not at a given time, and until when."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from vsphere_preemption.domain.pauses import (
    Pause,
    hold_for,
    next_expiry,
    pause_expiry,
    pause_problem,
    quiet_windows,
    requested_pause,
)
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


# -- a pause as a signal asks for it (the registry's reading) -------------------------------

NOW = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)


def test_a_requested_pause_is_scoped_stamped_and_ends_when_asked() -> None:
    body = {
        "alarm": "cpu",
        "entity": "domain-c7",
        "reason": "  DRS tuning ",
        "forSeconds": 5400.0,
        "by": "ops",
        "replyTo": "http://sink/",
    }
    pause = requested_pause(body, NOW)
    assert pause == Pause(
        "DRS tuning", "cpu", "domain-c7", NOW, NOW + timedelta(minutes=90), "ops", "http://sink/"
    )
    assert pause.key == ("cpu", "domain-c7") and pause.scope() == "alarm cpu on domain-c7"
    # No scope: everything, until lifted; an empty name is no scope (the Go-style JSON of null).
    everything = requested_pause({"reason": "upgrade", "alarm": "", "forSeconds": None}, NOW)
    assert (everything.alarm, everything.entity, everything.until) == (None, None, None)
    assert everything.scope() == "everything"


@pytest.mark.parametrize(
    ("seconds", "until"),
    [
        (None, None),
        (0, None),  # no length: until lifted, as the signal has always read it
        ("", None),
        (90, NOW + timedelta(seconds=90)),
        ("90", NOW + timedelta(seconds=90)),  # a number as text
        ("1h30m", NOW + timedelta(minutes=90)),  # Go's spelling, as the policy reads it
    ],
)
def test_a_pause_length_reads_as_the_settings_read_durations(
    seconds: object, until: datetime | None
) -> None:
    assert pause_expiry(seconds, NOW) == until


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ({"reason": "x", "forSeconds": "soon"}, "not a duration"),
        ({"reason": "x", "forSeconds": float("nan")}, "not a duration"),
        ({"reason": "x", "forSeconds": -60}, "not a duration"),
        ({"reason": "x", "forSeconds": True}, "not a duration"),
        ({"reason": "x", "forSeconds": 1e300}, "ends beyond any date"),
        ({"reason": "x", "alarm": 7}, "the alarm must be a name"),
        ({"reason": "x", "alarm": "cpu", "entity": ["domain-c7"]}, "the entity must be a name"),
        ({"reason": 42}, "the reason must be text"),
        ({"reason": " "}, "a pause needs a reason"),
        ({"reason": "x", "entity": "domain-c7"}, "name the alarm too"),
        ({"reason": "x" * 501}, "longer than 500 characters"),
    ],
)
def test_a_pause_the_registry_cannot_take_is_refused_with_the_reason(
    body: dict[str, object], why: str
) -> None:
    # Refused, not raised from deep inside: the registry logs it and carries on.
    with pytest.raises(ValueError, match=why):
        requested_pause(body, NOW)


def test_the_next_expiry_is_the_earliest_end_and_none_without_one() -> None:
    soon = Pause("a", until=NOW + timedelta(minutes=5))
    later = Pause("b", alarm="cpu", until=NOW + timedelta(hours=2))
    forever = Pause("c", alarm="mem")
    assert next_expiry([later, forever, soon], NOW) == timedelta(minutes=5)
    assert next_expiry([forever], NOW) is None  # nothing ends by itself: no timer
    assert next_expiry([], NOW) is None
    # One already over (its timer fired late): at once, never a negative timer.
    assert next_expiry([soon], NOW + timedelta(hours=1)) == timedelta(0)


# -- what a pause covers, and how it reads --------------------------------------------------


def test_a_pause_is_active_until_its_end_exactly() -> None:
    pause = Pause("x", until=NOW)
    assert pause.active(NOW - timedelta(microseconds=1))
    assert not pause.active(NOW)  # its end is the first moment it no longer holds
    assert Pause("x").active(datetime.max.replace(tzinfo=UTC))  # until lifted


def test_a_scope_covers_its_alarm_and_entities_and_nothing_else() -> None:
    assert Pause("x").covers("any", None)
    assert Pause("x", alarm="cpu").covers("cpu", "domain-c7")
    assert Pause("x", alarm="cpu").covers("cpu", None)
    assert not Pause("x", alarm="cpu").covers("mem", "domain-c7")
    one = Pause("x", alarm="cpu", entity="domain-c7")
    assert one.covers("cpu", "domain-c7")
    assert not one.covers("cpu", "domain-c8")
    assert not one.covers("cpu", None)  # a run without an entity is not that entity's


def test_a_pause_from_the_wire_fills_what_is_missing_and_reads_times_in_utc() -> None:
    pause = Pause.from_wire({"reason": "x", "since": "2026-12-05T10:00:00", "until": None})
    assert pause == Pause("x", since=NOW)  # a time without an offset is UTC
    with_offset = Pause.from_wire({"reason": "x", "until": "2026-12-05T11:00:00+01:00"})
    assert with_offset.until == NOW
    wire = Pause("x", until=NOW).to_wire()
    assert (wire["until"], wire["scope"], wire["since"]) == (
        "2026-12-05T10:00:00Z",
        "everything",
        None,
    )


def test_a_hold_by_a_pause_and_a_window_names_both_and_ends_with_the_later() -> None:
    night = windows(
        {"days": ["sat"], "start": "22:00", "end": "02:00", "timeZone": "Europe/Berlin"}
    )
    pause = Pause("upgrade", alarm="cpu", until=SATURDAY_2230_BERLIN + timedelta(hours=1))
    hold = hold_for(SATURDAY_2230_BERLIN, [pause], night, "cpu", "domain-c7")
    assert hold is not None and hold.source == "pause+quiet"
    assert hold.until == datetime(2026, 12, 6, 1, 0, tzinfo=UTC)  # the window's end is later
    assert hold.to_wire() == {
        "until": "2026-12-06T01:00:00Z",
        "reason": "upgrade (paused: alarm cpu); quiet window sat 22:00-02:00 Europe/Berlin",
        "source": "pause+quiet",
        "status": "paused until 2026-12-06T01:00:00Z: upgrade (paused: alarm cpu); "
        "quiet window sat 22:00-02:00 Europe/Berlin",
    }
    lifted_only = hold_for(SATURDAY_2230_BERLIN, [Pause("open", alarm="cpu")], (), "cpu", None)
    assert lifted_only is not None and lifted_only.status() == (
        "paused until unpaused: open (paused: alarm cpu)"
    )


# -- quiet windows as people write them -----------------------------------------------------


def test_days_read_as_names_prefixes_and_ranges_that_wrap_the_week() -> None:
    (weekend,) = windows({"days": ["fri-mon"], "start": "00:00", "end": "24:00"})
    assert weekend.days == (0, 4, 5, 6)
    (one,) = windows({"days": "Saturday", "start": "02:00", "end": "06:00"})
    assert one.days == (5,) and one.zone == "UTC"
    (every,) = windows({"start": "02:00", "end": "06:00"})
    assert every.days == tuple(range(7))  # no days: every day
    assert every.to_wire() == {
        "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
        "start": "02:00",
        "end": "06:00",
        "timeZone": "UTC",
    }


def test_a_whole_day_window_ends_at_midnight_and_the_next_day_is_not_covered() -> None:
    (saturday,) = windows({"days": ["sat"], "start": "00:00", "end": "24:00"})
    assert saturday.end_if_within(datetime(2026, 12, 5, 23, 59, tzinfo=UTC)) == datetime(
        2026, 12, 6, tzinfo=UTC
    )
    assert saturday.end_if_within(datetime(2026, 12, 6, 0, 0, tzinfo=UTC)) is None
    assert saturday.end_if_within(datetime(2026, 12, 4, 23, 59, tzinfo=UTC)) is None


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("sat 02:00-06:00", "quiet must be a list of windows"),
        (["sat"], "quiet[0] must be an object"),
        ([{"start": "02:00", "end": "06:00", "zone": "UTC"}], "quiet[0].zone is not a field"),
        ([{"start": "02:00", "end": "02:00"}], "quiet[0] starts and ends at the same time"),
        ([{"start": "24:00", "end": "06:00"}], "quiet[0].start must be between 00:00 and 23:59"),
        ([{"start": "02:00", "end": "24:01"}], "quiet[0].end must be between 00:00 and 24:00"),
        ([{"start": "02:60", "end": "06:00"}], "quiet[0].start must be between"),
        ([{"start": "2:0", "end": "06:00"}], "quiet[0].start must be a time of day like 02:00"),
        ([{"start": 2, "end": "06:00"}], "quiet[0].start must be a time of day"),
        ([{"days": ["sa"], "start": "02:00", "end": "06:00"}], "quiet[0].days: 'sa' is not a day"),
        ([{"days": [], "start": "02:00", "end": "06:00"}], "quiet[0].days must be a day or a list"),
        ([{"days": [6], "start": "02:00", "end": "06:00"}], "quiet[0].days must name days"),
        ([{"start": "02:00", "end": "06:00", "timeZone": " "}], "quiet[0].timeZone must be a"),
    ],
)
def test_a_bad_window_is_named_by_its_path_and_left_out(raw: object, problem: str) -> None:
    found, problems = quiet_windows(raw)
    assert found == ()
    assert any(p.startswith(problem) for p in problems), problems


def test_every_bad_window_is_named_and_the_good_ones_kept() -> None:
    found, problems = quiet_windows(
        [
            {"days": ["sun"], "start": "01:00", "end": "05:00"},
            {"start": "9am", "end": "06:00"},
            {"start": "02:00", "end": "06:00", "timeZone": "Mars/Olympus"},
        ]
    )
    assert [w.days for w in found] == [(6,)]
    assert problems == [
        "quiet[1].start must be a time of day like 02:00",
        "quiet[2].timeZone 'Mars/Olympus' is not a known time zone",
    ]
    assert quiet_windows(None) == ((), [])  # no windows: none, and nothing wrong
