"""`preemptctl workflow run | status | cancel | list`: a drop-in for the Go preemptctl, and more.

Flags, defaults and where they may be written follow the Go CLI: `--server`,
`--namespace`, `--queue`, `--verbose` and `--json` are accepted after `workflow`
and after each verb (cobra's persistent flags); `run` takes `--tag`,
`--criticality`, `--event`, `--reply-to`; `status` and `cancel` take `--run-id`.
Beyond the Go CLI: `run --entity/--dry-run/--policy-override/--set` (the request's
optional fields); `status`/`cancel --alarm NAME [--entity MOREF] [--go-id]` or
`--workflow-id` to address an alarm's workflow; `list`, the open preemption workflows.

Exit codes: 0 done, 1 the server or the workflow said no (one line on stderr),
2 invalid input (refused before anything is sent).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from vsphere_preemption.cli.temporal_access import ENVIRONMENT_HELP, security_from_environment
from vsphere_preemption.cli.workflow_input import (
    InvalidInput,
    address_workflow,
    build_request,
    require_not_empty,
)
from vsphere_preemption.domain.vcenters import vcenter_host, vcenter_task_queue
from vsphere_preemption.domain.workflow_ids import IdMode
from vsphere_preemption.wire import (
    CLI_WORKFLOW_ID,
    DEFAULT_NAMESPACE,
    DEFAULT_TAG,
    DEFAULT_TASK_QUEUE,
    QUERY_NAME,
    SIGNAL_NAME,
    WORKFLOW_TYPE,
    WorkflowRequest,
    go_json,
)

if TYPE_CHECKING:
    from vsphere_preemption.temporal.client import ListedWorkflow, PreemptionClient, State

DEFAULT_SERVER = "localhost:7233"

# Flags that every level accepts; resolved in `_Options` because argparse would
# otherwise let a verb's default overwrite a value given after `workflow`.
_SHARED_DEFAULTS: dict[str, Any] = {
    "server": DEFAULT_SERVER,
    "namespace": DEFAULT_NAMESPACE,
    "queue": DEFAULT_TASK_QUEUE,
    "verbose": False,
    "json": False,
}


def add_connection_flags(group: Any, *, queue: bool = True) -> None:
    """--server, --namespace, (--queue,) --verbose: every command that talks to Temporal.
    Suppressed defaults: a flag given before the subcommand is not overwritten after it."""
    sup = argparse.SUPPRESS
    group.add_argument(
        "-s", "--server", default=sup,
        help=f"Temporal frontend host:port (default {DEFAULT_SERVER})",
    )  # fmt: skip
    group.add_argument(
        "-n", "--namespace", default=sup,
        help=f"Temporal namespace (default {DEFAULT_NAMESPACE})",
    )  # fmt: skip
    if queue:
        group.add_argument(
            "-q", "--queue", default=sup,
            help=f"task queue the worker polls (default {DEFAULT_TASK_QUEUE})",
        )  # fmt: skip
        group.add_argument(
            "--vcenter", metavar="NAME", default=sup,
            help="the task queue of this vCenter's worker, with several vCenters: its queue in "
            "VCENTER_TASKQUEUES when NAME is a host there, else <queue>-NAME (the chart's "
            "queue for a vCenter without its own taskQueue); not with --queue",
        )  # fmt: skip
    group.add_argument(
        "--verbose", action="store_true", default=sup, help="explain each step on stderr"
    )


def queue_of(args: argparse.Namespace, queue: str) -> str:
    """The task queue a command addresses: --queue, or --vcenter's (see its help)."""
    vcenter = getattr(args, "vcenter", None)
    if vcenter is None:
        return queue
    if hasattr(args, "queue"):
        raise InvalidInput("--vcenter names the task queue: not with --queue")
    if not vcenter.strip():
        raise InvalidInput("--vcenter must not be empty")
    routes: dict[str, str] = {}
    raw = os.environ.get("VCENTER_TASKQUEUES", "").strip()
    if raw:
        try:
            parsed = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"VCENTER_TASKQUEUES is not JSON: {exc.msg}") from None
        if isinstance(parsed, dict):
            routes = {vcenter_host(str(k)): str(v) for k, v in parsed.items()}
    return vcenter_task_queue(vcenter, queue, routes)


def _add_shared_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("connection and output (also accepted after `workflow`)")
    sup = argparse.SUPPRESS
    add_connection_flags(group)
    group.add_argument(
        "--json", action="store_true", default=sup,
        help="print machine-readable JSON on stdout (status: the current_state answer as is)",
    )  # fmt: skip


def add_workflow_id_flags(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "-r", "--run-id", default="",
        help=f"{what} this run of the workflow (default: the latest run)",
    )  # fmt: skip
    parser.add_argument(
        "--workflow-id", default=None,
        help=f"workflow to address by its ID (default {CLI_WORKFLOW_ID}); not with --alarm",
    )  # fmt: skip
    parser.add_argument(
        "--alarm", default=None, metavar="NAME",
        help="address the workflow of this alarm (with --entity: of this alarm on that entity)",
    )  # fmt: skip
    parser.add_argument(
        "--entity", default=None, metavar="MOREF",
        help="with --alarm: the alarmed entity, TYPE:MOREF or a moref (domain-c7); "
        "the workflow ID is then <alarm>/<moref>",
    )  # fmt: skip
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--id-mode", choices=[m.value for m in IdMode], default=None,
        help="how --alarm makes the ID: entity (<alarm>/<moref>, the default) or alarm "
        "(the alarm alone, the Go function's form)",
    )  # fmt: skip
    mode.add_argument(
        "--go-id", dest="id_mode", action="store_const", const=IdMode.ALARM.value,
        help="same as --id-mode alarm",
    )  # fmt: skip


def _add_request_flags(parser: argparse.ArgumentParser) -> None:
    """The request's optional fields (ours; the Go worker ignores them)."""
    parser.add_argument(
        "--entity", default="", metavar="TYPE:MOREF",
        help="the entity whose VMs are candidates, e.g. ClusterComputeResource:domain-c7 "
        "or a moref whose prefix says its type (domain-c7, host-21); "
        "default: none, the whole vCenter",
    )  # fmt: skip
    parser.add_argument(
        "--policy-override", default="", metavar="JSON",
        help='policy fields to override for this request, e.g. \'{"maxVMs": 3}\'; the '
        "worker takes only those that make the run safer or its allowOverrides lists",
    )  # fmt: skip
    parser.add_argument(
        "--set", dest="policy_sets", action="append", default=[], metavar="KEY=VALUE",
        help="one policy field to override, by its path (maxVMs=2, scope=entity); "
        "repeatable, over --policy-override",
    )  # fmt: skip


def add_parser(subparsers: Any) -> None:
    workflow = subparsers.add_parser(
        "workflow",
        help="run, inspect or cancel a preemption workflow",
        description="Perform operations on a preemption workflow in Temporal.",
        epilog=ENVIRONMENT_HELP,
    )
    _add_shared_flags(workflow)
    verbs = workflow.add_subparsers(dest="verb", required=True, metavar="VERB")

    run = verbs.add_parser(
        "run",
        help="signal the preemption workflow, starting it if it is not running",
        description=(
            f"Send {SIGNAL_NAME} to workflow {CLI_WORKFLOW_ID!r}; Temporal starts the "
            "workflow first (5 min timeout) if it is not running."
        ),
    )
    run.add_argument(
        "-t", "--tag", default=DEFAULT_TAG,
        help=f"vSphere tag of the preemptible VMs (default {DEFAULT_TAG})",
    )  # fmt: skip
    run.add_argument(
        "-c", "--criticality", default="LOW",
        help="LOW (guest shutdown), MEDIUM or HIGH (forced power-off) (default LOW)",
    )  # fmt: skip
    run.add_argument(
        "-e", "--event", default="",
        help="CloudEvent (structured JSON) to send as the reason (default: a PreempctlRunEvent)",
    )  # fmt: skip
    run.add_argument(
        "--reply-to", default="",
        help="CloudEvents endpoint that receives the VmPreemptedEvent after the run (optional)",
    )  # fmt: skip
    run.add_argument(
        "--dry-run", action="store_true",
        help="plan and report only: the worker powers nothing off",
    )  # fmt: skip
    _add_request_flags(run)
    _add_shared_flags(run)

    status = verbs.add_parser(
        "status",
        help="show the last preemption run of a workflow",
        description="Show a workflow's status and its last preemption run (current_state).",
    )
    add_workflow_id_flags(status, "show")
    _add_shared_flags(status)

    cancel = verbs.add_parser(
        "cancel",
        help="cancel a running preemption workflow",
        description="Ask a running preemption workflow to cancel.",
    )
    add_workflow_id_flags(cancel, "cancel")
    _add_shared_flags(cancel)

    listing = verbs.add_parser(
        "list",
        help="list the open preemption workflows",
        description=(
            f"List the running {WORKFLOW_TYPE}s with their alarm, entity, last run and state "
            f"(each one's {QUERY_NAME} answer). Temporal's list lags a workflow's start by "
            "a moment."
        ),
    )
    listing.add_argument(
        "--alarm", default=None, metavar="NAME", help="only the workflows of this alarm"
    )
    _add_shared_flags(listing)


class CommandFailed(Exception):
    """The command could not do its job; `str()` is the one line the user sees."""


def workflow_id_from_args(args: argparse.Namespace) -> str:
    """The workflow ID the flags of `add_workflow_id_flags` name (default the CLI's own)."""
    return address_workflow(
        workflow_id_flag=args.workflow_id,
        alarm=args.alarm,
        entity=args.entity,
        id_mode=None if args.id_mode is None else IdMode(args.id_mode),
        default=CLI_WORKFLOW_ID,
    )


def error_handler(prog: str, *, verbose: bool) -> Callable[[Exception], int]:
    """How a command that talks to Temporal answers an error: one line and exit status 1."""
    from vsphere_preemption.temporal.client import TemporalError

    def on_error(exc: Exception) -> int:
        if isinstance(exc, TemporalError | CommandFailed):
            print(f"{prog}: error: {exc}", file=sys.stderr)
            return 1
        # A CLI answers with one line, not a traceback (unless asked to explain).
        if verbose:
            traceback.print_exception(exc)
        print(f"{prog}: unexpected error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1

    return on_error


@dataclass(frozen=True)
class _Options:
    verb: str
    server: str
    namespace: str
    queue: str
    verbose: bool
    json: bool

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> _Options:
        values = {name: getattr(args, name, default) for name, default in _SHARED_DEFAULTS.items()}
        values["queue"] = queue_of(args, values["queue"])
        return cls(verb=args.verb, **values)

    def debug(self, message: str) -> None:
        if self.verbose:
            print(f"preemptctl: {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    try:
        options = _Options.from_args(args)
    except InvalidInput as exc:
        print(f"preemptctl workflow {args.verb}: error: {exc}", file=sys.stderr)
        return 2
    try:
        require_not_empty(server=options.server, namespace=options.namespace, queue=options.queue)
        args.security = security_from_environment()
        request = None
        if options.verb == "run":
            request = build_request(
                tag=args.tag,
                criticality=args.criticality,
                event=args.event,
                reply_to=args.reply_to,
                now=datetime.now(UTC),
                entity=args.entity,
                dry_run=args.dry_run,
                policy_override=args.policy_override,
                policy_sets=args.policy_sets,
            )
        elif options.verb in ("status", "cancel"):
            args.workflow_id = workflow_id_from_args(args)
        elif args.alarm is not None:
            require_not_empty(alarm=args.alarm)
    except InvalidInput as exc:
        print(f"preemptctl workflow {options.verb}: error: {exc}", file=sys.stderr)
        return 2

    from vsphere_preemption.temporal.collected_runtime import run_collected

    on_error = error_handler(f"preemptctl workflow {options.verb}", verbose=options.verbose)
    return run_collected(lambda runtime: _dispatch(options, args, request, runtime), on_error)


async def _dispatch(
    options: _Options, args: argparse.Namespace, request: WorkflowRequest | None, runtime: Any
) -> int:
    from vsphere_preemption.temporal.client import PreemptionClient

    options.debug(f"connecting to {options.server}, namespace {options.namespace!r}")
    client = await PreemptionClient.connect(
        options.server,
        namespace=options.namespace,
        task_queue=options.queue,
        runtime=runtime,
        security=args.security,
    )
    if request is not None:
        return await _run(options, client, request)
    if options.verb == "list":
        return await _list(options, client, args.alarm)
    run_id = args.run_id or None
    if options.verb == "status":
        return await _status(options, client, args.workflow_id, run_id)
    return await _cancel(options, client, args.workflow_id, run_id)


def _say_where(options: _Options, request: WorkflowRequest) -> None:
    """Which VMs the run may touch, on stderr: a run without an entity acts on every VM
    carrying the tag in the whole vCenter, which nobody should learn afterwards."""
    where = "preemptctl workflow run:"
    entity = request.alarmed_entity()
    if request.entity is not None:
        options.debug(f"the run acts on the VMs under {request.entity}")
    elif entity is not None:
        print(
            f"{where} no --entity: the worker takes the alarm event's entity, {entity}",
            file=sys.stderr,
        )
    else:
        print(
            f"{where} no --entity: this run acts on the whole vCenter "
            f"(every VM tagged {request.tag!r}); --entity TYPE:MOREF names one entity",
            file=sys.stderr,
        )


def _print_json(value: Any) -> None:
    # go_json: the request's event data is printed as it was sent (RawJSON), `1.50` and all.
    print(go_json(value).decode())


async def _run(options: _Options, client: PreemptionClient, request: WorkflowRequest) -> int:
    from vsphere_preemption.temporal.client import CLI_EXECUTION_TIMEOUT

    options.debug(  # the payload's exact bytes
        f"signal-with-start {CLI_WORKFLOW_ID!r} on task queue {options.queue!r}: "
        f"{SIGNAL_NAME} {go_json(request.to_wire()).decode()}"
    )
    started = await client.signal_with_start(
        CLI_WORKFLOW_ID, request, execution_timeout=CLI_EXECUTION_TIMEOUT
    )
    _say_where(options, request)
    if options.json:
        _print_json(
            {
                "workflowID": started.workflow_id,
                "workflowRunID": started.run_id,
                "signal": SIGNAL_NAME,
                "request": request.to_wire(),
            }
        )
        return 0
    shutdown = "forced power-off" if request.criticality.forces_power_off else "guest shutdown"
    print(
        f"Sent {SIGNAL_NAME} to workflow {started.workflow_id!r} (run {started.run_id}) "
        f"in namespace {options.namespace!r}; Temporal started it on task queue "
        f"{options.queue!r} if it was not running."
    )
    print(
        f"tag {request.tag}, criticality {request.criticality.value} ({shutdown}), "
        f"event {request.event.get('type')} {request.event.get('id')}"
        + (f", reply to {request.reply_to}" if request.reply_to else "")
    )
    extras = [f"entity {request.entity}"] if request.entity is not None else []
    if request.dry_run:
        extras.append("dry run (nothing is powered off)")
    if request.policy is not None:
        extras.append(f"policy override {go_json(request.policy).decode()}")
    if extras:
        print(", ".join(extras))
    return 0


async def _list(options: _Options, client: PreemptionClient, alarm: str | None) -> int:
    import asyncio

    from vsphere_preemption.cli.workflow_render import list_json, render_list

    options.debug(f"listing open {WORKFLOW_TYPE}s" + (f" of alarm {alarm!r}" if alarm else ""))
    from vsphere_preemption.temporal.client import TemporalError

    listed = await client.list_workflows(alarm)

    async def state_of(workflow: ListedWorkflow) -> State | str:
        # One workflow that does not answer (no worker polls its queue) is a row that says
        # so, not a failed list.
        try:
            return await client.current_state(workflow.summary.workflow_id, workflow.summary.run_id)
        except TemporalError as exc:
            return str(exc)

    states = await asyncio.gather(*(state_of(w) for w in listed))
    rows = list(zip(listed, states, strict=True))
    if options.json:
        _print_json(list_json(rows))
    else:
        print(render_list(rows, datetime.now(UTC)))
    return 0


async def _status(
    options: _Options, client: PreemptionClient, workflow_id: str, run_id: str | None
) -> int:
    from vsphere_preemption.cli.workflow_render import render_status

    options.debug(f"describing workflow {workflow_id!r} and asking it for its current_state")
    state = await client.current_state(workflow_id, run_id)
    if options.json:
        print(state.raw_json)
    else:
        print(render_status(state.summary, state.response, datetime.now(UTC)))
    return 0


async def _cancel(
    options: _Options, client: PreemptionClient, workflow_id: str, run_id: str | None
) -> int:
    from vsphere_preemption.temporal.client import CancelOutcome

    options.debug(f"requesting cancellation of workflow {workflow_id!r}")
    cancellation = await client.cancel(workflow_id, run_id)
    if cancellation.outcome is not CancelOutcome.CANCEL_REQUESTED or not cancellation.summary:
        raise CommandFailed(cancellation.why)
    summary = cancellation.summary
    if options.json:
        _print_json(
            {
                "workflowID": summary.workflow_id,
                "workflowRunID": summary.run_id,
                "cancelRequested": True,
            }
        )
    else:
        print(
            f"Cancellation requested for workflow {summary.workflow_id!r} (run {summary.run_id}); "
            "the worker ends it after its current step."
        )
    return 0
