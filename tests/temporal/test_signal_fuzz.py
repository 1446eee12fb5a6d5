"""Malformed signals sent straight to a running workflow, with the real worker on vcsim.

Anyone with access to the namespace can signal the workflow (the Temporal CLI, another
client, a future function with a bug), so the workflow must take any payload: wrong JSON
types for every field of the request and of its event, missing fields, a huge tag, a
`replyTo` that is no URL, payloads that are not JSON or in another encoding, the wrong number
of payloads, a property-based flood of mutations of the Go function's own signal. What must
hold: the workflow never fails (no failed workflow task in its history, RUNNING), logs and
drops each, acts on none; and the next good signal powers the VMs off on vcsim.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import RawValue

from tests.temporal.helpers import (
    has_run,
    query_state,
    signal_payload,
    signal_with_start,
    unique,
    wait_for,
    workflow_task_failures,
)
from tests.temporal.rig import Rigs, powered_off, read_annotations, running_worker
from vsphere_preemption.wire import SIGNAL_NAME, WireError, WorkflowRequest, go_json

FUZZED = 200  # property-based mutations of the Go function's signal, on top of the corpus
WRONG: list[Any] = [None, True, 0, -1.5, "", "x", [], {}, [1, "a"], {"a": {"b": []}}]


def raw(data: bytes, encoding: bytes | None = b"json/plain") -> RawValue:
    metadata = {} if encoding is None else {"encoding": encoding}
    return RawValue(Payload(metadata=metadata, data=data))


def as_json(value: Any) -> RawValue:
    return raw(json.dumps(value).encode())


def _set(target: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    copied = copy.deepcopy(target)
    place = copied
    for key in path[:-1]:
        place = place[key]
    place[path[-1]] = value
    return copied


def _drop(target: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    copied = copy.deepcopy(target)
    place = copied
    for key in path[:-1]:
        place = place[key]
    del place[path[-1]]
    return copied


def refused(payload: Any) -> bool:
    """Whether the workflow's rule refuses it (the corpus must hold bad signals only)."""
    try:
        WorkflowRequest.from_json(json.dumps(payload, allow_nan=True))
    except (WireError, ValueError, RecursionError):
        return True
    return False


def corpus() -> list[tuple[str, list[RawValue]]]:
    """(what, the signal's payloads): each one the workflow must drop."""
    good = signal_payload(replyTo="")
    event = good["event"]
    cases: list[tuple[str, list[RawValue]]] = [
        ("not JSON", [raw(b"{not json")]),
        ("invalid UTF-8", [raw(b'{"tag": "\xff\xfe"}')]),
        ("empty data", [raw(b"")]),
        ("NaN", [raw(json.dumps({**good, "tag": float("nan")}).encode())]),
        ("100,000 nested arrays", [raw(b"[" * 100_000 + b"]" * 100_000)]),
        (
            "100,000 nested arrays as the event",
            [
                raw(
                    json.dumps(good)
                    .encode()
                    .replace(json.dumps(event).encode(), b"[" * 100_000 + b"]" * 100_000)
                )
            ],
        ),
        ("a 1.5 MB tag", [as_json({**good, "tag": "t" * 1_500_000})]),
        ("a 1.5 MB event", [as_json({**good, "event": {**event, "data": "d" * 1_500_000}})]),
        ("binary/plain", [raw(json.dumps(good).encode(), b"binary/plain")]),
        ("binary/null", [raw(b"", b"binary/null")]),
        ("json/protobuf garbage", [raw(b"\x08\x96\x01", b"json/protobuf")]),
        ("binary/protobuf garbage", [raw(b"\xff\xff\xff", b"binary/protobuf")]),
        ("an unknown encoding", [raw(json.dumps(good).encode(), b"application/x-yaml")]),
        ("no encoding at all", [raw(json.dumps(good).encode(), None)]),
        ("no payload", []),
        ("two payloads", [as_json(good), as_json(good)]),
        ("a replyTo that is no URL", [as_json({**good, "replyTo": "default-broker"})]),
        ("a replyTo with no host", [as_json({**good, "replyTo": "http://"})]),
        ("a replyTo of another scheme", [as_json({**good, "replyTo": "ftp://sink/"})]),
        ("a replyTo with spaces", [as_json({**good, "replyTo": " http://sink/"})]),
        (
            "duplicate keys, the last one bad",
            [raw(json.dumps(good).encode()[:-1] + b', "tag": ""}')],
        ),
    ]
    for value in [*WRONG, "[]", 10**40]:
        cases.append((f"the whole signal = {value!r}", [as_json(value)]))
    fields = [
        ("tag",),
        ("criticality",),
        ("event",),
        ("replyTo",),
        ("entity",),
        ("dryRun",),
        ("policy",),
        *[("event", name) for name in ("specversion", "id", "source", "type")],
    ]
    for path in fields:
        if path[-1] not in ("replyTo", "entity", "dryRun", "policy"):  # optional ones
            cases.append((f"no {'.'.join(path)}", [as_json(_drop(good, path))]))
        for value in WRONG:
            changed = _set(good, path, value)
            if refused(changed):  # e.g. "x" is a fine event source
                cases.append((f"{'.'.join(path)} = {value!r}", [as_json(changed)]))
    for value in ("EXTREME", "high ", "", "0"):
        cases.append((f"criticality {value!r}", [as_json({**good, "criticality": value})]))
    for value in ({"Type": 1, "Value": "x"}, {"Type": "VirtualMachine"}, {"Value": ""}):
        cases.append((f"entity {value!r}", [as_json({**good, "entity": value})]))
    for name, payloads in cases:  # the JSON ones are refused by the rule: none may act
        if len(payloads) == 1 and payloads[0].payload.metadata.get("encoding") == b"json/plain":
            with contextlib.suppress(ValueError, RecursionError):  # not JSON: refused anyway
                assert refused(json.loads(payloads[0].payload.data)), name
    return cases


# A mutation of the Go function's signal: a value of any JSON type at a field of the request
# or its event (or the field removed), once to four times.
FIELD = st.sampled_from(
    [
        "tag",
        "criticality",
        "event",
        "replyTo",
        "entity",
        "dryRun",
        "policy",
        "event.id",
        "event.source",
        "event.type",
        "event.specversion",
        "event.data",
        "event.time",
        "event.datacontenttype",
    ]
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
MUTATIONS = st.lists(st.tuples(FIELD, st.none() | JSON, st.booleans()), min_size=1, max_size=4)


def mutate(mutations: list[tuple[str, Any, bool]]) -> dict[str, Any]:
    payload = signal_payload(replyTo="")
    for name, value, remove in mutations:
        path = tuple(name.split("."))
        if not isinstance(payload.get("event"), dict) and len(path) > 1:
            continue
        payload = (
            _drop(payload, path)
            if remove and path[-1] in _at(payload, path)
            else (_set(payload, path, value))
        )
    return payload


def _at(payload: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    place = payload
    for key in path[:-1]:
        place = place[key]
    return place


def fuzzed_signals(count: int) -> list[tuple[str, list[RawValue]]]:
    """`count` refused mutations of the Go function's signal, drawn by hypothesis."""
    found: list[tuple[str, list[RawValue]]] = []

    @settings(
        max_examples=count * 3,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(MUTATIONS)
    def draw(mutations: list[tuple[str, Any, bool]]) -> None:
        payload = mutate(mutations)
        if len(found) < count and refused(payload):
            text = json.dumps(payload, allow_nan=True).encode()
            found.append((f"fuzzed {mutations!r}"[:200], [raw(text)]))

    draw()
    return found


def scheduled_activities(events: list[Any]) -> list[str]:
    wanted = EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    return [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in events
        if e.event_type == wanted
    ]


async def test_malformed_signals_never_fail_the_workflow_and_the_next_good_one_acts(
    temporal_client: Client, worker_rig: Rigs, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="temporalio.workflow")
    _, vcenter, scene, queue, env = worker_rig("bad-signals", on=3, off=1)
    bad = corpus() + fuzzed_signals(FUZZED)
    assert len(bad) > 150 + FUZZED // 2

    def dropped() -> int:
        return sum(r.getMessage().startswith("dropping ") for r in caplog.records)

    async with running_worker(env):
        # The first bad signal starts the workflow, as a function's signal-with-start would.
        handle = await signal_with_start(
            temporal_client, unique("alarm"), queue, {"tag": "", "event": {}}
        )
        for _, payloads in bad:
            await handle.signal(SIGNAL_NAME, args=payloads)
        await handle.signal("NotOurSignal", signal_payload())
        # At least once each (a workflow task retried would run a handler again).
        await wait_for(lambda: dropped() >= len(bad) + 2, timeout=120, what="all dropped")
        events = list((await handle.fetch_history()).events)
        assert workflow_task_failures(events) == []
        assert scheduled_activities(events) == []  # nothing acted on, not even planned
        assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
        assert (await query_state(handle))["virtualMachines"] is None  # still answers

        # The next good signal acts: the tagged, running VMs go off on vcsim.
        good = signal_payload(replyTo="")
        await handle.signal(SIGNAL_NAME, raw(go_json(good)))
        answer = await has_run(handle)
        events = list((await handle.fetch_history()).events)
        description = await handle.describe()
        await handle.terminate("test over")

    assert workflow_task_failures(events) == []
    assert description.status == WorkflowExecutionStatus.RUNNING
    assert answer["event"]["id"] == good["event"]["id"]
    assert powered_off(vcenter, scene.all_vms) == set(scene.on) | set(scene.off)
    assert set(read_annotations(vcenter, scene.all_vms)) == set(scene.on)
    vcenter.close()
