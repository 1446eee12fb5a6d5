"""The activities' own rules, called directly: real HTTP sink, real vcsim.

What only shows at the edges: a sink that does not acknowledge, a replyTo that is
not a URL or carries credentials, a tag that does not exist. The happy paths run
through the real worker in tests/e2e/test_worker_e2e.py.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Iterator

import httpx
import pytest
from temporalio.exceptions import ApplicationError

from tests.conftest import FIXTURES
from tests.temporal.rig import client_for, vcsim_args
from vsphere_preemption.devtools.devservers import Vcsim, free_port
from vsphere_preemption.devtools.inventory import Inventory
from vsphere_preemption.devtools.sink import EventSink
from vsphere_preemption.domain.model import Criticality
from vsphere_preemption.domain.policy import Policy
from vsphere_preemption.temporal.activities import PreemptionActivities
from vsphere_preemption.temporal.client import TemporalError
from vsphere_preemption.temporal.contracts import (
    FindVmsInput,
    PauseBook,
    PlanInput,
    PreemptionPolicy,
    SendEventInput,
)
from vsphere_preemption.vsphere.client import VSphereClient
from vsphere_preemption.vsphere.config import VCenterConfig
from vsphere_preemption.wire import PREEMPTED_EVENT_TYPE, go_json

SOURCE = "127.0.0.1:7233/vsphere-preemption"
DATA = {"preempted": True, "tag": "preemptible", "virtualMachines": [{"Type": "VirtualMachine",
        "Value": "vm-1"}]}  # fmt: skip
DATA_JSON = go_json(DATA).decode()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5) as client:
        yield client


@pytest.fixture
def sim(vcsim_factory: Callable[..., Vcsim]) -> Vcsim:
    return vcsim_factory(*vcsim_args())


@pytest.fixture
def vcenter() -> Iterator[VSphereClient]:
    """For the event tests: never used, so never connected (the client is lazy)."""
    config = VCenterConfig(url="https://127.0.0.1:9/sdk", username="u", password="p")
    with VSphereClient(config) as client:
        yield client


def activities(vcenter: VSphereClient, http: httpx.Client) -> PreemptionActivities:
    return PreemptionActivities(vcenter, PreemptionPolicy(), SOURCE, http)


def test_a_sink_that_does_not_acknowledge_is_an_error_to_retry(
    vcenter: VSphereClient, http: httpx.Client
) -> None:
    with EventSink(statuses=[500]) as sink:
        with pytest.raises(ApplicationError) as caught:
            activities(vcenter, http).send_preempted_event(
                SendEventInput(reply_to=sink.url, event_id="alarm-1-ev-1", data_json=DATA_JSON)
            )
        (event,) = sink.events
    assert not caught.value.non_retryable
    assert caught.value.type == "SinkRejected"
    assert "HTTP 500" in str(caught.value)
    # What was sent is the right event, in binary content mode.
    assert (event.type, event.id, event.source) == (
        PREEMPTED_EVENT_TYPE, "alarm-1-ev-1", SOURCE,
    )  # fmt: skip
    assert event.data == DATA
    assert event.mode == "binary"
    assert sink.received[0].body == DATA_JSON.encode(), (
        "the data's bytes as the workflow wrote them"
    )
    headers = {k.lower(): v for k, v in sink.received[0].headers.items()}
    assert headers["content-type"] == "application/json"
    assert headers["ce-id"] == "alarm-1-ev-1"


def test_credentials_in_reply_to_never_reach_the_error(
    vcenter: VSphereClient, http: httpx.Client
) -> None:
    with EventSink(statuses=[503]) as sink:
        url = sink.url.replace("http://", "http://broker:s3cret-pw@")
        with pytest.raises(ApplicationError) as rejected:
            activities(vcenter, http).send_preempted_event(
                SendEventInput(reply_to=url, event_id="e", data_json=DATA_JSON)
            )
    refused = f"http://broker:s3cret-pw@127.0.0.1:{free_port()}/x"
    with pytest.raises(ApplicationError) as unreachable:
        activities(vcenter, http).send_preempted_event(
            SendEventInput(reply_to=refused, event_id="e", data_json=DATA_JSON)
        )
    assert unreachable.value.type == "SinkUnreachable" and not unreachable.value.non_retryable
    for error in (rejected.value, unreachable.value):
        assert "s3cret-pw" not in str(error)
        assert "127.0.0.1" in str(error)


@pytest.mark.parametrize("reply_to", ["not a url", "ftp://broker/x", "http://"])
def test_a_reply_to_that_is_no_http_url_fails_once_without_retry(
    vcenter: VSphereClient, http: httpx.Client, reply_to: str
) -> None:
    with pytest.raises(ApplicationError) as caught:
        activities(vcenter, http).send_preempted_event(
            SendEventInput(reply_to=reply_to, event_id="e", data_json=DATA_JSON)
        )
    assert caught.value.non_retryable
    assert caught.value.type == "InvalidReplyTo"


def test_a_tag_that_does_not_exist_fails_without_retry(sim: Vcsim, http: httpx.Client) -> None:
    with client_for(sim) as vcenter, pytest.raises(ApplicationError) as caught:
        activities(vcenter, http).get_preemptible_vms(FindVmsInput("no-such-tag", 10))
    assert caught.value.non_retryable
    assert caught.value.type == "TagNotFound"
    assert "no-such-tag" in str(caught.value)


GO_EVENT = FIXTURES / "go"
# Go's time.RFC3339Nano in UTC: up to nine fraction digits, never a trailing zero.
GO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{0,8}[1-9])?Z")


def test_the_event_is_sent_as_the_go_worker_sends_it(
    vcenter: VSphereClient, http: httpx.Client
) -> None:
    go_headers = json.loads((GO_EVENT / "worker-VmPreemptedEvent-headers.json").read_text())
    go_body = (GO_EVENT / "worker-VmPreemptedEvent-body.json").read_text()
    assert GO_TIME.fullmatch(go_headers["Ce-Time"])
    sends = activities(vcenter, http)
    with EventSink() as sink:
        for _ in range(20):  # 1 in 10 clock readings ends in a zero digit
            sends.send_preempted_event(
                SendEventInput(reply_to=sink.url, event_id=go_headers["Ce-Id"], data_json=go_body)
            )
    for message in sink.received:
        headers = {k.lower(): v for k, v in message.headers.items()}
        assert message.body == go_body.encode()
        ce = {k: v for k, v in headers.items() if k.startswith("ce-") or k == "content-type"}
        assert set(ce) == {k.lower() for k in go_headers}
        go_values = {k.lower(): v for k, v in go_headers.items()}
        for name in ("ce-id", "ce-specversion", "ce-type", "content-type"):
            assert ce[name] == go_values[name]
        assert GO_TIME.fullmatch(ce["ce-time"]), ce["ce-time"]
    assert any(len(m.headers["ce-time"]) > len("2026-11-30T12:41:56.123456Z")
               for m in sink.received), "nanoseconds, as Go's clock gives them"  # fmt: skip


def plan_input(tag: str, registry: str | None) -> PlanInput:
    return PlanInput(tag, None, Policy().to_wire(), Criticality.HIGH, pauses_registry=registry)


async def test_the_plan_reads_the_pauses_while_it_reads_vcenter(
    sim: Vcsim, http: httpx.Client
) -> None:
    """pauses-in-plan: the registry's answer comes back with the plan; a read that fails
    comes back as why (the workflow then holds the run, as when ReadPauses fails)."""
    asked: list[str] = []
    pause = {"reason": "upgrade", "by": "test", "alarm": "", "entity": ""}

    async def reader(registry: str) -> PauseBook:
        asked.append(registry)
        if registry == "broken":
            raise TemporalError("the pause registry broken did not answer: deadline exceeded")
        return PauseBook(version=3, pauses=[pause])

    with client_for(sim) as vcenter:
        Inventory(vcenter).tag("pausing", Inventory(vcenter).objects("VirtualMachine")[:2])
        acts = PreemptionActivities(
            vcenter, PreemptionPolicy(), SOURCE, http, pauses=reader,
            loop=asyncio.get_running_loop(),
        )  # fmt: skip
        # A thread, as the worker runs it: the read runs on this loop meanwhile.
        read = await asyncio.to_thread(acts.plan_preemption, plan_input("pausing", "registry-1"))
        unread = await asyncio.to_thread(acts.plan_preemption, plan_input("pausing", "broken"))
        neither = await asyncio.to_thread(acts.plan_preemption, plan_input("pausing", None))
        # A worker that cannot query the registry here answers without the pauses (the
        # workflow then reads them with ReadPauses), never with "nothing paused".
        no_loop = PreemptionActivities(vcenter, PreemptionPolicy(), SOURCE, http, pauses=reader)
        unasked = await asyncio.to_thread(no_loop.plan_preemption, plan_input("pausing", "r-2"))
    assert len(read.plan["victims"]) == 2
    assert read.pauses == PauseBook(version=3, pauses=[pause]) and read.pauses_unread == ""
    assert unread.pauses is None and "did not answer" in unread.pauses_unread
    assert neither.pauses is None and neither.pauses_unread == ""  # no registry: none read
    assert unasked.pauses is None and unasked.pauses_unread == ""
    assert asked == ["registry-1", "broken"]
