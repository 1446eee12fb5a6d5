"""The one Temporal client of the package: connect, signal-with-start, describe, query, cancel,
list, and read a workflow's history of runs.

The function, `preemptctl workflow` and the demo all go through `PreemptionClient`, so they
share one set of timeouts and one error mapping: every failure is a `TemporalError` whose
message is one line, safe to show a person or return to the broker.

The workflow is addressed by its type NAME (`PreemptVMsWorkflow`), never by our class, so a Go
worker or ours runs it alike. The signal goes out as a raw `json/plain` payload we encode
ourselves: the SDK's JSON converter sorts keys, and the Go worker and our fixtures expect the
field order Go writes.

temporalio is imported inside the methods, not at module level: loading the SDK takes about
half a second, and the function wants to answer liveness meanwhile (it imports this module
cheaply, then connects in the background).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from vsphere_preemption.domain.text import one_line
from vsphere_preemption.domain.workflow_ids import IdMode, parse_workflow_id
from vsphere_preemption.temporal.connect_diagnosis import WANTS_TLS, core_reason, wants_tls
from vsphere_preemption.wire import (
    HISTORY_QUERY,
    PAUSE_SIGNAL,
    PAUSES_QUERY,
    PAUSES_WORKFLOW_TYPE,
    QUERY_NAME,
    SIGNAL_NAME,
    UNPAUSE_SIGNAL,
    WORKFLOW_TYPE,
    WireError,
    WorkflowRequest,
    WorkflowResponse,
    format_time,
    go_json,
    pauses_workflow_id,
)

if TYPE_CHECKING:
    from temporalio.client import (
        Client,
        Interceptor,
        WorkflowExecution,
        WorkflowExecutionDescription,
        WorkflowHandle,
    )
    from temporalio.runtime import Runtime

    from vsphere_preemption.settings import TemporalSecurity
    from vsphere_preemption.temporal.contracts import PauseBook

# The Go function's workflow execution timeout (docs/wire.md, Names), kept in its form only
# (WORKFLOW_ID_MODE=alarm), where a Go worker may run the workflow and expects it. Temporal
# counts it across continue-as-new, so it ends a workflow whose alarm stays raised longer,
# silently, with what it stopped forgotten: the per-entity form sets none, and the workflow
# ends itself (a lowering, or the policy's maxLifetime, announced).
ALARM_MODE_EXECUTION_TIMEOUT = timedelta(hours=24)
# The Go CLI's, so the workflows `preemptctl workflow run` starts end alike.
CLI_EXECUTION_TIMEOUT = timedelta(minutes=5)
# Bounds on one call, retries included (the Go CLI gives each command 5 s): the broker's
# delivery should get an answer in time to retry itself rather than time out.
RPC_TIMEOUT = timedelta(seconds=5)
CONNECT_TIMEOUT = timedelta(seconds=5)
# The open preemption workflows, in Temporal's visibility query language.
OPEN_WORKFLOWS_QUERY = f"WorkflowType='{WORKFLOW_TYPE}' AND ExecutionStatus='Running'"
# The closed ones (completed, cancelled, continued as new, timed out, terminated, failed).
CLOSED_WORKFLOWS_QUERY = f"WorkflowType='{WORKFLOW_TYPE}' AND ExecutionStatus!='Running'"
# More open workflows than this is not something one table could show.
LIST_LIMIT = 1000


class TemporalError(Exception):
    """A Temporal call failed; the message is one line, safe to return to the caller."""


class TemporalUnavailable(TemporalError):
    """Temporal cannot be reached (not connected, down, timed out): worth retrying."""


class TemporalRejected(TemporalError):
    """Temporal answered with an error (unknown namespace, no such workflow, ...)."""


class WorkflowNotFound(TemporalRejected):
    """Temporal has no such workflow (or run): NOT_FOUND."""


class CancelOutcome(StrEnum):
    CANCEL_REQUESTED = "cancel_requested"
    NOT_RUNNING = "not_running"  # no workflow of that ID, or it has closed already: fine


@dataclass(frozen=True)
class StartedRun:
    workflow_id: str
    run_id: str


@dataclass(frozen=True)
class WorkflowSummary:
    """The execution as Temporal describes it (not what the workflow itself reports)."""

    workflow_id: str
    run_id: str
    workflow_type: str
    task_queue: str
    status: str  # lower case: running, completed, canceled, terminated, timed_out, failed...
    start_time: datetime
    close_time: datetime | None = None
    timeout_at: datetime | None = None

    @property
    def status_text(self) -> str:
        return self.status.replace("_", " ")


@dataclass(frozen=True)
class ListedWorkflow:
    """An open preemption workflow as visibility lists it, its ID read as alarm and entity."""

    summary: WorkflowSummary
    alarm: str
    entity: str | None  # the moref value in the ID; None: the ID is the alarm alone
    vcenter: str | None = None  # the vCenter's host in the ID (a function serving several)


@dataclass(frozen=True)
class State:
    """What `current_state` learned: the execution, the last run, and its JSON as received."""

    summary: WorkflowSummary
    response: WorkflowResponse
    raw_json: str


@dataclass(frozen=True)
class RunHistory:
    """A workflow run's record of its preemption runs (the `history` query, or its result).

    `records` is None when the run holds none to give, and `why` says why: it completed
    before runs were recorded (its result has no `history`), it continued as new (its runs
    went on into the next run), or it closed without a result and no worker was asked.
    """

    summary: WorkflowSummary
    records: tuple[dict[str, Any], ...] | None
    why: str = ""


@dataclass(frozen=True)
class Cancellation:
    """What `cancel` did; `why` says, in one line, why nothing was cancelled."""

    outcome: CancelOutcome
    summary: WorkflowSummary | None
    why: str = ""


def execution_timeout_for(mode: IdMode) -> timedelta | None:
    """The function's execution timeout for its workflow-ID form; None: no timeout."""
    return ALARM_MODE_EXECUTION_TIMEOUT if mode is IdMode.ALARM else None


def signal_payload_bytes(request: WorkflowRequest) -> bytes:
    """The exact bytes of the `PreemptVMsChan` signal's single argument."""
    return go_json(request.to_wire())


def connect_failure_reason(error: BaseException) -> str:
    """The useful part of a connection error from temporalio's Rust core, in one line."""
    if isinstance(error, TimeoutError):
        return f"no answer within {CONNECT_TIMEOUT.total_seconds():.0f}s"
    return core_reason(one_line(error))


_RETRYABLE = {"UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED", "RESOURCE_EXHAUSTED", "UNKNOWN"}


@contextmanager
def translating(
    doing: str, *, query: bool = False, hint: str = "", not_found: str | None = None
) -> Iterator[None]:
    """Turn whatever a Temporal call raises into one TemporalError, one line, the original as
    its cause (our own errors pass as they are).

    The message starts with `doing`. A call's failure is classified: a status worth retrying
    (UNAVAILABLE, DEADLINE_EXCEEDED, ...), or a failure that is not the server's answer, is
    TemporalUnavailable, any other status TemporalRejected. A failed `query` is always
    TemporalRejected, `doing: <why it did not answer><hint>`: the workflow did not answer,
    whatever the reason. NOT_FOUND is a WorkflowNotFound, worded `not_found (<the server's
    words>)` when that is given.
    """
    try:
        yield
    except TemporalError:
        raise
    except Exception as exc:  # every failure is reported, in one line
        raise _translated(exc, doing, query=query, hint=hint, not_found=not_found) from exc


def _translated(
    exc: Exception, doing: str, *, query: bool, hint: str, not_found: str | None
) -> TemporalError:
    from temporalio.service import RPCError, RPCStatusCode

    missing = isinstance(exc, RPCError) and exc.status == RPCStatusCode.NOT_FOUND
    if missing and not_found is not None:
        return WorkflowNotFound(f"{not_found} ({one_line(getattr(exc, 'message', exc))})")
    if query:
        kind: type[TemporalError] = WorkflowNotFound if missing else TemporalRejected
        return kind(f"{doing}: {_query_failure_reason(exc)}{hint}")
    if not isinstance(exc, RPCError):
        return TemporalUnavailable(f"{doing}: {one_line(exc)}")
    if missing:
        kind = WorkflowNotFound
    else:
        kind = TemporalUnavailable if exc.status.name in _RETRYABLE else TemporalRejected
    return kind(f"{doing}: Temporal {exc.status.name}: {one_line(exc.message or exc)}")


def _run_label(workflow_id: str, run_id: str | None) -> str:
    return f"workflow {workflow_id!r}" + (f" (run {run_id})" if run_id else "")


def summarize(description: WorkflowExecutionDescription) -> WorkflowSummary:
    timeout = description.raw_description.execution_config.workflow_execution_timeout
    timeout_at = None
    if timeout.ToNanoseconds() > 0 and description.close_time is None:
        timeout_at = description.start_time + timeout.ToTimedelta()
    return _summary(description, timeout_at)


def _summary(execution: WorkflowExecution, timeout_at: datetime | None = None) -> WorkflowSummary:
    # A description is an execution as visibility lists it, plus what only describe says.
    status = execution.status.name.lower() if execution.status else "unknown"
    return WorkflowSummary(
        workflow_id=execution.id,
        run_id=execution.run_id,
        workflow_type=execution.workflow_type,
        task_queue=execution.task_queue,
        status=status,
        start_time=execution.start_time,
        close_time=execution.close_time,
        timeout_at=timeout_at,
    )


def _listed(execution: WorkflowExecution) -> ListedWorkflow:
    address = parse_workflow_id(execution.id)
    return ListedWorkflow(
        summary=_summary(execution),
        alarm=address.alarm,
        entity=address.entity,
        vcenter=address.vcenter,
    )


def _as_json_text(value: Any) -> str:
    # The Go workflow answers the query with a JSON string and returns the same
    # structure as an object when it completes; either is kept as JSON text.
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def security_options(security: TemporalSecurity | None) -> dict[str, Any]:
    """`Client.connect`'s TLS and API key arguments. The SDK sends the key as
    `authorization: Bearer <key>` on every call; it never logs it, and neither do we."""
    from temporalio.service import TLSConfig

    if security is None:
        return {}
    tls: bool | TLSConfig = security.tls
    if security.tls and (security.ca or security.cert or security.server_name):
        tls = TLSConfig(
            server_root_ca_cert=security.ca,
            client_cert=security.cert,
            client_private_key=security.key,
            domain=security.server_name,
        )
    return {"tls": tls, "api_key": security.api_key}


class PreemptionClient:
    """One connected Temporal client, bound to a namespace and the workers' task queue."""

    def __init__(self, client: Client, *, task_queue: str) -> None:
        self._client = client
        self.task_queue = task_queue

    @property
    def client(self) -> Client:
        return self._client

    @property
    def namespace(self) -> str:
        return self._client.namespace

    @classmethod
    async def connect(
        cls,
        target: str,
        *,
        namespace: str,
        task_queue: str,
        runtime: Runtime | None = None,
        interceptors: Sequence[Interceptor] = (),
        security: TemporalSecurity | None = None,
    ) -> PreemptionClient:
        """Connect, or raise TemporalUnavailable saying why Temporal cannot be reached."""
        from temporalio.client import Client
        from temporalio.service import RetryConfig

        try:
            client = await asyncio.wait_for(
                Client.connect(
                    target,
                    namespace=namespace,
                    runtime=runtime,
                    interceptors=interceptors,
                    **security_options(security),
                    connect_timeout=CONNECT_TIMEOUT,
                    # The SDK retries transient errors itself; keep that inside one RPC_TIMEOUT.
                    retry_config=RetryConfig(max_elapsed_time_millis=4000, max_retries=5),
                ),
                timeout=CONNECT_TIMEOUT.total_seconds(),
            )
        except Exception as exc:  # any failure to connect means: not connected
            reason = connect_failure_reason(exc)
            if await wants_tls(target, security, exc, reason):
                reason = WANTS_TLS
            raise TemporalUnavailable(
                f"cannot reach the Temporal server at {target}: {reason}"
            ) from exc
        return cls(client, task_queue=task_queue)

    async def signal_with_start(
        self,
        workflow_id: str,
        request: WorkflowRequest,
        *,
        execution_timeout: timedelta | None = None,
        task_queue: str | None = None,
    ) -> StartedRun:
        """Signal `PreemptVMsChan` to the workflow, starting it first if none is running, on
        `task_queue` (by default the client's), with `execution_timeout` if given (it
        applies only when this call starts the workflow)."""
        from temporalio.api.common.v1 import Payload
        from temporalio.common import RawValue

        payload = Payload(metadata={"encoding": b"json/plain"}, data=signal_payload_bytes(request))
        with translating("signal-with-start"):
            handle = await self._client.start_workflow(
                WORKFLOW_TYPE,
                id=workflow_id,
                task_queue=task_queue or self.task_queue,
                execution_timeout=execution_timeout,
                start_signal=SIGNAL_NAME,
                start_signal_args=[RawValue(payload)],
                rpc_timeout=RPC_TIMEOUT,
            )
        return StartedRun(workflow_id, handle.result_run_id or "")

    async def describe(self, workflow_id: str, run_id: str | None = None) -> WorkflowSummary:
        """The execution (the latest run unless `run_id` names one)."""
        label = _run_label(workflow_id, run_id)
        missing = f"no {label} in namespace {self.namespace!r}"
        with translating(f"cannot describe {label}", not_found=missing):
            handle = self._client.get_workflow_handle(workflow_id, run_id=run_id)
            description = await handle.describe(rpc_timeout=RPC_TIMEOUT)
        return summarize(description)

    async def current_state(self, workflow_id: str, run_id: str | None = None) -> State:
        """The execution and its last run (`current_state`, or the result once completed)."""
        from temporalio.client import WorkflowExecutionStatus

        summary = await self.describe(workflow_id, run_id)
        handle = self._client.get_workflow_handle(workflow_id, run_id=summary.run_id)
        answer: Any = None
        if summary.status == WorkflowExecutionStatus.COMPLETED.name.lower():
            answer = await _completion_result(handle)
        if answer is None:
            unanswered = (
                f"{_run_label(workflow_id, summary.run_id)} is {summary.status_text} but did "
                f"not answer the {QUERY_NAME!r} query"
            )
            with translating(unanswered, query=True, hint=_worker_hint(summary)):
                answer = await handle.query(QUERY_NAME, rpc_timeout=RPC_TIMEOUT)
        raw = _as_json_text(answer)
        try:
            response = WorkflowResponse.from_wire(raw)
        except WireError as exc:
            raise TemporalRejected(
                f"{_run_label(workflow_id, summary.run_id)} answered {QUERY_NAME!r} with "
                f"something that is not a WorkflowResponse: {exc}"
            ) from None
        return State(summary=summary, response=response, raw_json=raw)

    # -- the pause registry (temporal/pause_registry.py) -----------------------------------

    async def pause(self, pause: dict[str, Any], *, task_queue: str | None = None) -> str:
        """Ask the registry of `task_queue` to hold `pause` (its `alarm`, `entity`, `reason`,
        `forSeconds`, `by`, `replyTo`), starting the registry if none runs; its workflow ID."""
        return await self._to_registry(PAUSE_SIGNAL, pause, task_queue or self.task_queue)

    async def unpause(self, scope: dict[str, Any], *, task_queue: str | None = None) -> str:
        """Ask the registry to lift the pause of `scope` (`alarm`, `entity`), or every pause
        (`all`); the registry is started if none runs (it then has nothing to lift)."""
        return await self._to_registry(UNPAUSE_SIGNAL, scope, task_queue or self.task_queue)

    async def _to_registry(self, signal: str, body: dict[str, Any], task_queue: str) -> str:
        registry = pauses_workflow_id(task_queue)
        with translating(f"{signal} to {registry}"):
            await self._client.start_workflow(
                PAUSES_WORKFLOW_TYPE,
                id=registry,
                task_queue=task_queue,
                start_signal=signal,
                start_signal_args=[body],
                rpc_timeout=RPC_TIMEOUT,
            )
        return registry

    async def read_pauses(self, registry_id: str) -> PauseBook:
        """The registry's pauses as its `pauses` query answers them; none when no registry
        was ever started (nobody paused anything)."""
        from vsphere_preemption.temporal.contracts import PauseBook

        handle = self._client.get_workflow_handle(registry_id)
        try:
            with translating(f"the pause registry {registry_id} did not answer", query=True):
                answer = await handle.query(PAUSES_QUERY, rpc_timeout=RPC_TIMEOUT)
        except WorkflowNotFound:  # an answer: no pause was ever asked for
            return PauseBook()
        book = json.loads(_as_json_text(answer))
        return PauseBook(version=int(book.get("version", 0)), pauses=list(book.get("pauses", [])))

    async def list_workflows(self, alarm: str | None = None) -> list[ListedWorkflow]:
        """The open PreemptVMsWorkflows of the namespace (of `alarm` only, when given), by
        alarm, then entity, then workflow ID.

        Visibility is eventually consistent: a workflow started a moment ago may not be
        listed yet (the dev server's SQLite visibility lags by up to a second or so).
        """
        with translating("cannot list workflows"):
            found = [
                _listed(execution)
                async for execution in self._client.list_workflows(
                    OPEN_WORKFLOWS_QUERY, limit=LIST_LIMIT, rpc_timeout=RPC_TIMEOUT
                )
            ]
        if alarm is not None:
            found = [w for w in found if w.alarm == alarm]
        return sorted(found, key=lambda w: (w.alarm, w.entity or "", w.summary.workflow_id))

    async def list_closed(
        self,
        alarm: str | None = None,
        *,
        closed_since: datetime | None = None,
        limit: int = LIST_LIMIT,
    ) -> list[ListedWorkflow]:
        """The closed PreemptVMsWorkflows (of `alarm` only, when given; closed at or after
        `closed_since`, when given), the most recently closed first, at most `limit`.

        Eventually consistent, as `list_workflows`: a workflow closed a moment ago may still
        be listed as running, or not yet as closed.
        """
        query = CLOSED_WORKFLOWS_QUERY
        if closed_since is not None:
            query += f" AND CloseTime >= '{format_time(closed_since)}'"
        found: list[ListedWorkflow] = []
        with translating("cannot list closed workflows"):
            async for execution in self._client.list_workflows(
                query, page_size=min(limit, 1000), rpc_timeout=RPC_TIMEOUT
            ):
                listed = _listed(execution)
                if alarm is None or listed.alarm == alarm:
                    found.append(listed)
                    if len(found) >= limit:
                        break
        return found

    async def history(self, workflow_id: str, run_id: str | None = None) -> RunHistory:
        """The runs a workflow run remembers (the latest run unless `run_id` names one):
        its `history` query while it runs, its result's `history` once completed, or, for a
        run that closed without a result (timed out, terminated, failed), the query again,
        which a worker polling its task queue answers by replaying it."""
        return await self.history_of(await self.describe(workflow_id, run_id))

    async def history_of(self, summary: WorkflowSummary, *, ask_worker: bool = True) -> RunHistory:
        """`history` of a run already described or listed; `ask_worker=False` does not query
        a closed run that left no result (the query would wait for a worker to replay it)."""
        handle = self._client.get_workflow_handle(summary.workflow_id, run_id=summary.run_id)
        label = _run_label(summary.workflow_id, summary.run_id)
        if summary.status == "completed":
            with translating(f"cannot read the result of {label}"):
                result = await handle.result(follow_runs=False, rpc_timeout=RPC_TIMEOUT)
            if not isinstance(result, dict) or "history" not in result:
                why = f"{label} completed before runs were recorded: its result has no history"
                return RunHistory(summary, None, why)
            return RunHistory(summary, _records(result["history"], label, "its result"))
        if summary.status == "continued_as_new":
            next_run = await _next_run(handle, label)
            why = f"{label} continued as new: its runs went on into the next run{next_run}"
            return RunHistory(summary, None, why)
        if summary.status != "running" and not ask_worker:
            why = f"{label} is {summary.status_text}: it left no result to read its runs from"
            return RunHistory(summary, None, why)
        return RunHistory(summary, await self._query_history(handle, summary))

    async def _query_history(
        self, handle: WorkflowHandle[Any, Any], summary: WorkflowSummary
    ) -> tuple[dict[str, Any], ...]:
        label = _run_label(summary.workflow_id, summary.run_id)
        left = "" if summary.status == "running" else ", left no result,"
        unanswered = (
            f"{label} is {summary.status_text}{left} and did not answer the {HISTORY_QUERY!r} query"
        )
        with translating(unanswered, query=True, hint=_worker_hint(summary)):
            answer = await handle.query(HISTORY_QUERY, rpc_timeout=RPC_TIMEOUT)
        try:
            parsed = json.loads(answer) if isinstance(answer, str) else answer
        except ValueError:
            parsed = answer
        return _records(parsed, label, f"its {HISTORY_QUERY!r} answer")

    async def cancel(self, workflow_id: str, run_id: str | None = None) -> Cancellation:
        """Request cancellation of this workflow ID's running preemption workflow, only that one.

        The server accepts a cancel request for a run that has closed already, so we look
        first: no such workflow, a closed run, or a workflow of another type under that ID is
        NOT_RUNNING (with `why`), which the function takes as done and the CLI as an error.
        """
        try:
            summary = await self.describe(workflow_id, run_id)
        except TemporalRejected as exc:
            return Cancellation(CancelOutcome.NOT_RUNNING, None, str(exc))
        label = _run_label(workflow_id, summary.run_id)
        if summary.status != "running":
            why = f"{label} is not running ({summary.status_text}): nothing to cancel"
            return Cancellation(CancelOutcome.NOT_RUNNING, summary, why)
        if summary.workflow_type != WORKFLOW_TYPE:
            why = f"{label} is a {summary.workflow_type}, not a {WORKFLOW_TYPE}: left alone"
            return Cancellation(CancelOutcome.NOT_RUNNING, summary, why)
        # That run exactly: a run started after we looked is not the one that lowered.
        handle = self._client.get_workflow_handle(workflow_id, run_id=summary.run_id)
        try:
            with translating(f"cannot cancel {label}"):
                await handle.cancel(rpc_timeout=RPC_TIMEOUT)
        except WorkflowNotFound:
            return Cancellation(CancelOutcome.NOT_RUNNING, summary, f"{label} is gone")
        return Cancellation(CancelOutcome.CANCEL_REQUESTED, summary)


async def _completion_result(handle: WorkflowHandle[Any, Any]) -> Any:
    # A completed PreemptVMsWorkflow returns its last state: read it from history,
    # which needs no worker (a query on a closed workflow needs one to replay).
    try:
        return await handle.result(follow_runs=False, rpc_timeout=RPC_TIMEOUT)
    except Exception:  # noqa: BLE001 - any failure here only means "ask the query instead"
        return None


async def _next_run(handle: WorkflowHandle[Any, Any], label: str) -> str:
    """` (run ID)` of the run a run continued as, from its result; empty if it names none."""
    from temporalio.client import WorkflowContinuedAsNewError

    with translating(f"cannot read the result of {label}"):
        try:
            await handle.result(follow_runs=False, rpc_timeout=RPC_TIMEOUT)
        except WorkflowContinuedAsNewError as exc:
            return f" (run {exc.new_execution_run_id})"
    return ""


def _worker_hint(summary: WorkflowSummary) -> str:
    """What to check when a run does not answer a query."""
    return f" (is a worker polling task queue {summary.task_queue!r}?)"


def _records(value: Any, label: str, where: str) -> tuple[dict[str, Any], ...]:
    if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
        shown = one_line(str(value), 200)
        raise TemporalRejected(f"{label}: {where} is not a list of runs: {shown}")
    return tuple(value)


def _query_failure_reason(exc: BaseException) -> str:
    from temporalio.service import RPCError, RPCStatusCode

    if isinstance(exc, RPCError) and exc.status == RPCStatusCode.DEADLINE_EXCEEDED:
        return f"no answer within {RPC_TIMEOUT.total_seconds():.0f}s"
    return one_line(getattr(exc, "message", None) or exc)
