"""The demo's CloudEvents sink: what it records and what it refuses."""

from __future__ import annotations

import httpx
import pytest
from cloudevents.core.bindings.http import to_binary, to_structured
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from tests.cli.demo_fixtures import NOW
from vsphere_preemption.devtools.sink import EventSink
from vsphere_preemption.wire import PREEMPTED_EVENT_TYPE


def test_the_sink_records_binary_and_structured_events_and_refuses_the_rest() -> None:
    event = CloudEvent(
        attributes={
            "id": "a-1",
            "source": "here",
            "type": PREEMPTED_EVENT_TYPE,
            "time": NOW,
            "datacontenttype": "application/json",
        },
        data={"virtualMachines": [{"Type": "VirtualMachine", "Value": "vm-1"}]},
    )
    with EventSink() as sink:
        assert sink.wait_for(PREEMPTED_EVENT_TYPE, timeout=0.05) is None
        for message in (to_binary(event, JSONFormat()), to_structured(event, JSONFormat())):
            answer = httpx.post(sink.url, headers=message.headers, content=message.body)
            assert answer.status_code == 202
        refused = httpx.post(sink.url, content=b"hello", headers={"content-type": "text/plain"})
        assert refused.status_code == 400 and "not a CloudEvent" in refused.json()["error"]
        got = sink.wait_for(PREEMPTED_EVENT_TYPE, timeout=5)
        assert got is not None and got.id == "a-1" and got.source == "here"
        assert [e.mode for e in sink.events] == ["binary", "structured"]
        assert all(e.data == event.get_data() for e in sink.events)
        assert len(sink.rejected) == 1
        url = sink.url
    with pytest.raises(httpx.TransportError):
        httpx.post(url, content=b"{}", timeout=2)
