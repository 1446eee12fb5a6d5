"""The alarm rules: every status transition in any letter case, each shape, the name filter."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from tests.conftest import fixture_json, fixture_text
from vsphere_preemption.domain.alarm_rules import (
    Action,
    RuleError,
    criticality_for,
    decide,
    is_raising,
)
from vsphere_preemption.domain.events import (
    OLD_ROUTER_SUBJECT,
    OLD_ROUTER_TYPE,
    TANZU_SOURCES_TYPE,
    AlarmChange,
    JsonData,
    XmlData,
    decode,
)
from vsphere_preemption.domain.model import Criticality

ALARM = "cluster-cpu-above-80"
STATUSES = ("gray", "green", "yellow", "red")

# docs/wire.md decision rule 6, written out pair by pair rather than re-derived from the rule.
RAISING = {
    ("gray", "yellow"), ("green", "yellow"), ("yellow", "yellow"),
    ("gray", "red"), ("green", "red"), ("yellow", "red"), ("red", "red"),
}  # fmt: skip
CRITICALITY = {
    "gray": Criticality.LOW,
    "green": Criticality.LOW,
    "yellow": Criticality.MEDIUM,
    "red": Criticality.HIGH,
}


def last_upper(status: str) -> str:
    return status[:-1] + status[-1].upper()


CASES: dict[str, Callable[[str], str]] = {
    "lower": str.lower,
    "upper": str.upper,
    "title": str.title,
    "odd": last_upper,
}


def change(frm: str, to: str, name: str = ALARM) -> AlarmChange:
    data = {"Alarm": {"Name": name}, "From": frm, "To": to}
    return decode({"id": "1", "type": TANZU_SOURCES_TYPE}, JsonData(data))


@pytest.mark.parametrize(("frm", "to"), list(itertools.product(STATUSES, STATUSES)))
@pytest.mark.parametrize("case", list(CASES))
def test_the_full_transition_table_in_any_letter_case(frm: str, to: str, case: str) -> None:
    spell = CASES[case]
    decision = decide(change(spell(frm), spell(to)), ALARM)
    assert decision.action is (Action.PREEMPT if (frm, to) in RAISING else Action.CANCEL)
    assert decision.criticality is CRITICALITY[to]
    assert spell(frm) in decision.reason and spell(to) in decision.reason


def test_there_are_seven_raising_and_nine_lowering_pairs() -> None:
    pairs = list(itertools.product(STATUSES, STATUSES))
    raising = [p for p in pairs if is_raising(*p)]
    assert set(raising) == RAISING and len(pairs) - len(raising) == 9


def test_unknown_statuses_are_lowering_with_low_criticality() -> None:
    decision = decide(change("green", "purple"), ALARM)
    assert (decision.action, decision.criticality) == (Action.CANCEL, Criticality.LOW)
    assert criticality_for(" red") is Criticality.LOW  # compared as sent, only lower-cased


def test_another_alarm_is_ignored_even_without_statuses() -> None:
    assert decide(change("green", "red", name="other"), ALARM).action is Action.IGNORE
    assert decide(change("", "", name="other"), ALARM).action is Action.IGNORE
    # The name must match exactly, as in Go.
    assert decide(change("green", "red", name=ALARM.upper()), ALARM).action is Action.IGNORE


def test_several_alarm_names_are_served() -> None:
    names = {ALARM, "host-memory-high"}
    assert decide(change("green", "red", name="host-memory-high"), names).action is Action.PREEMPT
    assert decide(change("red", "green", name=ALARM), names).action is Action.CANCEL
    ignored = decide(change("green", "red", name="other"), names)
    assert ignored.action is Action.IGNORE
    assert "'cluster-cpu-above-80' or 'host-memory-high'" in ignored.reason


@pytest.mark.parametrize(("frm", "to"), [("", "red"), ("green", ""), ("", "")])
def test_a_matching_alarm_without_from_or_to_is_an_error(frm: str, to: str) -> None:
    with pytest.raises(RuleError, match="without From or To"):
        decide(change(frm, to), ALARM)


def old_router_event() -> tuple[dict[str, Any], JsonData]:
    event = fixture_json("01_old-router_AlarmStatusChangedEvent.json")["event"]
    return event, JsonData(event["data"])


def test_each_event_shape_and_encoding_decides_the_same() -> None:
    attributes, data = old_router_event()
    assert attributes["subject"] == OLD_ROUTER_SUBJECT and attributes["type"] == OLD_ROUTER_TYPE
    old = decide(decode(attributes, data), ALARM)
    new_json = decide(decode({"type": TANZU_SOURCES_TYPE}, data), ALARM)
    xml = fixture_text("07_new-tanzu-sources_AlarmStatusChangedEvent_data.xml")
    new_xml = decide(decode({"type": TANZU_SOURCES_TYPE}, XmlData(xml)), ALARM)
    assert old == new_json == new_xml
    assert (old.action, old.criticality) == (Action.PREEMPT, Criticality.HIGH)


def test_the_yellow_sample_raises_with_medium_criticality_for_its_alarm() -> None:
    data = JsonData(fixture_json("05_AlarmStatusChangedEvent_data_green-to-yellow.json"))
    decided = decide(decode({"type": TANZU_SOURCES_TYPE}, data), "test-04")
    assert (decided.action, decided.criticality) == (Action.PREEMPT, Criticality.MEDIUM)


def test_decisions_are_values() -> None:
    one = change("green", "red")
    assert decide(one, ALARM) == decide(replace(one, event_id="other"), ALARM)
