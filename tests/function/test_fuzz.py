"""Bad input against the running function: a corpus of malformed requests, then a
property-based fuzzer of 10,000 requests, over real HTTP to `preemptctl function` as a process
(a crash, a dropped connection and memory growth are all seen), on the real Temporal dev server.

What must hold for every request: a 2xx or a 4xx (never a 5xx), an answer on the connection
(it is closed only after a 413 or the HTTP layer's own 400), the process alive; and for the
valid raising events sent between the junk: each is signalled to its workflow (Temporal's
history has every one of them).
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.service import RPCError

from tests.conftest import fixture_json, fixture_text
from tests.function.bad_requests import corpus, wrong_types
from tests.function.conftest import CLUSTER, alarm_event, as_binary, as_structured, on
from tests.function.process import Answer, Dropped, FunctionProcess, RawClient, http_request
from tests.temporal.helpers import unique
from vsphere_preemption.devtools.devservers import TemporalDevServer
from vsphere_preemption.function.cloudevent_http import STRUCTURED
from vsphere_preemption.function.http_protocol import MAX_HEAD
from vsphere_preemption.wire import DEFAULT_NAMESPACE, SIGNAL_NAME

# How many requests the fuzzer sends. The suite's run is the same every time; for a soak by
# hand, FUZZ_EXAMPLES raises the count and FUZZ_SEED draws other inputs:
#   FUZZ_EXAMPLES=50000 FUZZ_SEED=7 .venv/bin/pytest tests/function/test_fuzz.py -k fuzzed
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "10000"))
SEED = os.environ.get("FUZZ_SEED")
GOOD_EVERY = 25  # a valid raising event after every 25 fuzzed requests
# Resident memory may grow this much over the last four fifths of the fuzz (allocator arenas
# settling), no more: a leak of 1 KiB per request would pass 7.8 MiB over 8,000 requests.
RSS_SLACK_KIB = 6 * 1024


@dataclass
class Fuzzed:
    function: FunctionProcess
    alarm: str
    workflows: set[str] = field(default_factory=set)  # every workflow a request signalled


@pytest.fixture(scope="module")
def fuzzed(
    temporal_server: TemporalDevServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fuzzed]:
    alarm = unique("fuzz-alarm")
    settings_env = {
        "TEMPORAL_URL": temporal_server.address,
        "TEMPORAL_NAMESPACE": DEFAULT_NAMESPACE,
        "TEMPORAL_TASKQUEUE": unique("fuzz"),  # no worker: the workflows only gather signals
        "VSPHERE_PREEMPTION_TAG": "preemptible",
        "VSPHERE_ALARM_NAME": alarm,
        # Its valid raises come one after the other for one alarm and entity, as fast as they
        # are answered: paced, each would wait SIGNAL_SPACING. Pacing has tests of its own
        # (test_signal_lines.py, tests/e2e/test_storm_e2e.py); this one is about the answers.
        "SIGNAL_SPACING": "0",
    }
    log = tmp_path_factory.mktemp("fuzz") / "function.log"
    with FunctionProcess(settings_env, log) as function:
        yield Fuzzed(function, alarm)
        assert function.alive(), function.log()[-3000:]
    # Stopped gracefully (SIGTERM re-raised after uvicorn's shutdown), no traceback logged.
    assert function.proc is not None and function.proc.returncode in (0, -15)
    assert "Traceback" not in function.log()


@pytest.fixture(scope="module", autouse=True)
async def _terminate_workflows(fuzzed: Fuzzed, temporal_client: Client) -> Any:
    yield
    for workflow_id in fuzzed.workflows:
        with contextlib.suppress(RPCError):  # never started, or closed already
            await temporal_client.get_workflow_handle(workflow_id).terminate("fuzz done")


def check(answer: Answer, what: str) -> dict[str, Any] | None:
    """The answer is a 2xx or 4xx; the JSON reply (None for the HTTP layer's own 400)."""
    assert 200 <= answer.status < 300 or 400 <= answer.status < 500, (what, answer)
    if answer.closed:
        assert answer.status in (400, 413), f"{what}: closed after {answer.status}"
    if not answer.headers.get("content-type", "").startswith("application/json"):
        assert answer.status == 400, (what, answer)  # uvicorn's "Invalid HTTP request"
        return None
    reply: dict[str, Any] = json.loads(answer.body)
    if answer.status >= 400:
        assert isinstance(reply["error"], str) and reply["error"].strip(), (what, reply)
        assert "\n" not in reply["error"] and "internal error" not in reply["error"]
    else:
        assert reply["decision"] in ("preempt", "cancel", "ignore", "duplicate"), (what, reply)
    return reply


def remember(fuzzed: Fuzzed, reply: dict[str, Any] | None) -> None:
    if reply is not None and "workflowID" in reply:
        fuzzed.workflows.add(reply["workflowID"])


def test_each_request_of_the_corpus_gets_its_4xx_and_a_reason(fuzzed: Fuzzed) -> None:
    port = fuzzed.function.port
    wrong: list[str] = []
    with RawClient(port) as client:
        for bad in corpus(fuzzed.alarm):
            method = bad.raw.split(b" ", 1)[0].decode()
            try:
                answer = client.send(bad.raw, method=method)
            except Dropped as exc:
                if not bad.may_drop:
                    wrong.append(f"{bad.name}: {exc}")
                continue
            reply = check(answer, bad.name)
            remember(fuzzed, reply)
            error = "" if reply is None else reply.get("error", "")
            if answer.status != bad.status or bad.error not in error:
                wrong.append(f"{bad.name}: {answer.status} {error!r}")
            if answer.closed and not bad.may_drop:
                wrong.append(f"{bad.name}: the connection was closed")
            assert fuzzed.function.alive(), f"{bad.name} killed the function"
            # The next request on a fresh connection is served as usual.
            with RawClient(port) as probe:
                assert probe.get("/health/liveness").status == 200, bad.name
    assert wrong == []


def test_every_field_and_attribute_of_the_wrong_type_is_a_2xx_or_a_4xx(fuzzed: Fuzzed) -> None:
    typed = wrong_types(fuzzed.alarm)
    assert len(typed) > 300  # every field of the sample's data, each CloudEvents attribute
    refused: set[str] = set()
    with RawClient(fuzzed.function.port) as client:
        for case in typed:
            answer = client.send(case.raw)
            reply = check(answer, case.name)
            assert not answer.closed, case.name
            remember(fuzzed, reply)
            if answer.status == 400:
                refused.add(case.field)
        # Keep-alive throughout: the server closed nothing (the client only replaces a
        # connection after a pause the server might have closed it in).
        assert client.connections == 1 + client.idle_reopened
    # What the decision reads is refused when it has the wrong type; the rest is carried
    # through as it came (the Go function reads only these, too).
    for name in (
        "data.Alarm",
        "data.Alarm.Name",
        "data.From",
        "data.To",
        "data.Entity",
        "data.Entity.Entity.Value",
        "data.Key",
        "data.CreatedTime",
        "id",
        "source",
        "type",
        "specversion",
        "time",
        "datacontenttype",
    ):
        assert name in refused, name


# -- the fuzzer -----------------------------------------------------------------------------


def _samples(alarm: str) -> list[tuple[list[tuple[str, str]], Any, str]]:
    """The real events the fuzzer mutates: (headers, data as JSON value or text, mode)."""
    raising = alarm_event(alarm, "green", "red")
    lowering = alarm_event(alarm, "red", "green", old_router=True)
    xml = alarm_event(alarm, "yellow", "red", xml=True)
    reference = fixture_json("02_old-router_PreemptVMsChan-signal-WorkflowRequest.json")["event"]
    other = {**raising, "type": "com.vmware.vsphere.DrsVmPoweredOnEvent.v0"}
    text = fixture_text("06_new-tanzu-sources_DrsVmPoweredOnEvent.txt").split("Data,", 1)[1]
    other["data"] = json.JSONDecoder().raw_decode(text.strip())[0]  # (the dump goes on)
    found = []
    for event in (raising, lowering, xml, reference, other):
        found.append((list(as_binary(event)[0].items()), event, "binary"))
        found.append((list(as_structured(event)[0].items()), event, "structured"))
    return found


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
# Framing (Content-Length, Transfer-Encoding) is the corpus' business: a fuzzed length
# would split one request into two answers and desynchronise the client.
HEADER_NAMES = st.sampled_from(
    [
        "ce-id",
        "ce-source",
        "ce-type",
        "ce-specversion",
        "ce-time",
        "ce-subject",
        "ce-datacontenttype",
        "ce-dataschema",
        "content-type",
        "ce-x",
        "ce-",
        "CE-ID",
        "ce-ID ",
        "ce-data_base64",
    ]
) | st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=12).filter(
    lambda name: name.lower() not in ("content-length", "transfer-encoding")
)
HEADER_VALUES = st.sampled_from(
    [
        "",
        "1.0",
        "0.3",
        "application/json",
        "application/xml",
        "application/cloudevents+json",
        "application/cloudevents-batch+json",
        "text/plain; charset=utf-16",
        "chunked",
        "2024-05-14T09:31:27Z",
        "-1",
        "0",
        "99999999999",
    ]
) | st.text(st.characters(max_codepoint=255, exclude_characters="\r\n"), max_size=40)
MUTATION = st.one_of(
    st.tuples(st.just("json"), st.integers(0, 10**6), JSON),  # a value at a path of the data
    st.tuples(st.just("drop"), st.integers(0, 10**6)),  # a path of the data removed
    st.tuples(
        st.just("attr"),
        st.sampled_from(
            [
                "id",
                "source",
                "type",
                "specversion",
                "time",
                "datacontenttype",
                "subject",
                "data",
                "data_base64",
                "ext",
            ]
        ),
        JSON,
    ),
    st.tuples(st.just("header"), HEADER_NAMES, HEADER_VALUES),  # a header added or replaced
    st.tuples(st.just("unheader"), st.integers(0, 20)),  # a header removed
    st.tuples(st.just("bytes"), st.integers(0, 10**6), st.binary(max_size=8)),  # spliced in
    st.tuples(st.just("cut"), st.integers(0, 10**6)),  # the body truncated
    st.tuples(st.just("nest"), st.integers(1, 3000)),  # the body nested in arrays
)
REQUESTS = st.tuples(st.integers(0, 9), st.lists(MUTATION, min_size=1, max_size=4))


def _json_paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _json_paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _json_paths(item, (*prefix, index))
    return found


def _at(data: Any, path: tuple[Any, ...], value: Any, *, drop: bool = False) -> Any:
    if not path:
        return value
    target = data
    for key in path[:-1]:
        target = target[key]
    if drop:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


def build(sample: tuple[list[tuple[str, str]], Any, str], mutations: list[Any]) -> bytes:
    """One fuzzed request: a real event with the mutations applied, as bytes."""
    headers, event, mode = sample
    headers = list(headers)
    event = copy.deepcopy(event)
    data = event["data"]
    raw_tail: list[Any] = []
    for mutation in mutations:
        kind = mutation[0]
        if kind in ("json", "drop") and isinstance(data, dict | list):
            paths = _json_paths(data)
            if paths:
                path = paths[mutation[1] % len(paths)]
                data = _at(data, path, None if kind == "drop" else mutation[2], drop=kind == "drop")
        elif kind == "attr":
            event[mutation[1]] = mutation[2]
        elif kind == "header":
            headers = [(k, v) for k, v in headers if k != mutation[1]] + [mutation[1:]]
        elif kind == "unheader" and headers:
            del headers[mutation[1] % len(headers)]
        else:
            raw_tail.append(mutation)  # byte-level: applied to the encoded body below
    event["data"] = data
    if mode == "structured":
        body = json.dumps(event).encode()
    elif isinstance(data, str):
        body = data.encode("utf-8", "surrogatepass")
    else:
        body = json.dumps(data).encode()
        for name, value in event.items():  # attributes changed by "attr" go to headers
            if name not in ("data", "datacontenttype") and isinstance(value, str):
                headers = [(k, v) for k, v in headers if k != f"ce-{name}"]
                # A CR or LF would end the header or the head early and desynchronise the
                # client (a client's fault; the corpus sends such injections on purpose).
                headers.append((f"ce-{name}", value.replace("\r", "").replace("\n", "")))
    for mutation in raw_tail:
        if mutation[0] == "nest":
            body = b"[" * mutation[1] + body + b"]" * mutation[1]
            continue
        at = mutation[1] % (len(body) + 1)
        body = body[:at] + mutation[2] + body[at:] if mutation[0] == "bytes" else body[:at]
    return http_request("POST", "/", headers, body)


def good_event(alarm: str, number: int) -> bytes:
    headers, body = as_binary(alarm_event(alarm, "green", "red", event_id=f"good-{number}"))
    return http_request("POST", "/", list(headers.items()), body)


# A bound against a hang, not a timing goal: 30-45 s on a quiet machine, 184 s once when
# a full run shared the two cores with four other test runs (load average 11).
@pytest.mark.timeout(600)
# Not traced for coverage: the function it fuzzes runs in a process of its own (never
# counted), and tracing Hypothesis' generation of 10,000 requests in this one doubled the
# test's time (40 s against 86 s, 2026-12-08) to count nothing of ours.
@pytest.mark.no_cover
async def test_10000_fuzzed_requests_get_2xx_or_4xx_and_valid_events_between_are_signalled(
    fuzzed: Fuzzed, temporal_client: Client
) -> None:
    function, alarm = fuzzed.function, fuzzed.alarm
    samples = _samples(alarm)
    client = RawClient(function.port)
    statuses: dict[int, int] = {}
    sent = 0
    good: list[str] = []

    last: list[tuple[bytes, Answer]] = []

    def send(raw: bytes, what: str) -> dict[str, Any] | None:
        try:
            answer = client.send(raw)
        except Dropped as exc:
            before = last[-1] if last else None
            raise AssertionError(f"{what}: {exc}\n{raw[:600]!r}\nafter {before!r}") from None
        last[:] = [(raw[:600], answer)]
        statuses[answer.status] = statuses.get(answer.status, 0) + 1
        reply = check(answer, f"{what}: {raw[:2000]!r}")
        remember(fuzzed, reply)
        return reply

    # Warm up (imports, caches, the Temporal client's channels, the allocator's arenas at the
    # sizes the largest bad requests take), then measure from a fifth of the way in.
    with RawClient(function.port) as warm:
        for bad in corpus(alarm):
            with contextlib.suppress(Dropped):
                warm.send(bad.raw, method=bad.raw.split(b" ", 1)[0].decode())
    for number in range(200):
        send(build(samples[number % len(samples)], [("cut", 10**6)]), "warm-up")
    rss_before = function.rss_kib()
    started = time.monotonic()

    def fuzz(request: tuple[int, list[Any]]) -> None:
        nonlocal sent, rss_before
        sample, mutations = request
        send(build(samples[sample], mutations), "fuzzed")
        sent += 1
        if sent == EXAMPLES // 5:
            rss_before = function.rss_kib()
        if sent % GOOD_EVERY == 0:
            reply = send(good_event(alarm, sent), "a valid event")
            assert reply is not None and reply["decision"] == "preempt", reply
            good.append(f"good-{sent}")

    property_test = given(REQUESTS)(fuzz)
    if SEED is not None:
        property_test = seed(int(SEED))(property_test)
    property_test = settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=SEED is None,
        suppress_health_check=list(HealthCheck),
    )(property_test)
    try:
        property_test()
    finally:
        client.close()
    seconds = time.monotonic() - started
    reopened = client.idle_reopened
    rss_after = function.rss_kib()
    assert function.alive()
    assert sent >= EXAMPLES
    print(
        f"\n{sent} fuzzed + {len(good)} valid requests in {seconds:.1f} s; statuses {statuses}; "
        f"RSS {rss_before} -> {rss_after} KiB; {reopened} connections replaced after a pause"
    )
    assert rss_after - rss_before < RSS_SLACK_KIB, (rss_before, rss_after)
    # Both kinds of answer were reached: the fuzz is not all refused at the first check.
    assert statuses.get(200, 0) > EXAMPLES // 20 and statuses.get(400, 0) > EXAMPLES // 4

    # Every valid event between the junk became a signal of its alarm's workflow.
    history = await temporal_client.get_workflow_handle(on(alarm, CLUSTER)).fetch_history()
    signalled = set()
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            attrs = event.workflow_execution_signaled_event_attributes
            assert attrs.signal_name == SIGNAL_NAME
            signalled.add(json.loads(attrs.input.payloads[0].data)["event"]["id"])
    assert set(good) <= signalled, sorted(set(good) - signalled)[:10]


def test_a_connection_the_server_closed_as_idle_is_not_reused(fuzzed: Fuzzed) -> None:
    # The fuzzer's old flake: the test process paused (hypothesis, a collection of a full
    # run's heap) for the server's 5 s keep-alive timeout after a 400, the server closed the
    # idle connection, as HTTP lets it, and the next request, written on that connection,
    # got no answer: RemoteDisconnected. Here the pause is waited out on purpose.
    truncated = b'{"specversion": "1.0", "id": "x", "sour'
    request = http_request("POST", "/", [("content-type", STRUCTURED)], truncated)
    with RawClient(fuzzed.function.port) as client:
        first = client.send(request)
        assert (first.status, first.closed) == (400, False)
        client.wait_until_closed_by_server(timeout=60)
        again = client.send(request)
        assert (again.status, again.closed) == (400, False)
        assert (client.connections, client.idle_reopened) == (2, 1)


def test_a_request_head_that_never_ends_is_refused_at_its_limit(fuzzed: Fuzzed) -> None:
    # httptools sets no limit of its own: a header line is held until it ends. Without ours
    # the server would read all of this and wait for more (the recv below would time out).
    answer = b""
    with (
        socket.create_connection(("127.0.0.1", fuzzed.function.port), timeout=10) as sock,
        contextlib.suppress(ConnectionResetError, BrokenPipeError),  # refused mid-way
    ):
        sock.sendall(b"POST / HTTP/1.1\r\nhost: function\r\nce-x: ")
        for _ in range(4 * MAX_HEAD // 4096):
            sock.sendall(b"v" * 4096)
        answer = sock.recv(4096)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 400"), answer[:200]
    with RawClient(fuzzed.function.port) as client:  # and the function serves on
        assert (
            client.send(http_request("GET", "/health/liveness", [], b""), method="GET").status
            == 200
        )


def test_log_has_no_traceback_after_the_fuzz(fuzzed: Fuzzed) -> None:
    log = fuzzed.function.log()
    assert "Traceback" not in log and "event handling failed" not in log
    assert fuzzed.function.alive()
