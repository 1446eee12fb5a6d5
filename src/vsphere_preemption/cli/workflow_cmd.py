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
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from vsphere_preemption.cli import temporal_access
from vsphere_preemption.cli.temporal_access import Options
from vsphere_preemption.cli.workflow_input import InvalidInput, build_request, require_not_empty
from vsphere_preemption.wire import (
    CLI_WORKFLOW_ID,
    DEFAULT_TAG,
    QUERY_NAME,
    SIGNAL_NAME,
    WORKFLOW_TYPE,
    WorkflowRequest,
    go_json,
)

if TYPE_CHECKING:
    from temporalio.runtime import Runtime

    from vsphere_preemption.settings import TemporalSecurity
    from vsphere_preemption.temporal.client import ListedWorkflow, PreemptionClient, State


def _add_shared_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("connection and output (also accepted after `workflow`)")
    sup = argparse.SUPPRESS
    temporal_access.add_connection_flags(group)
    group.add_argument(
        "--json", action="store_true", default=sup,
        help="print machine-readable JSON on stdout (status: the current_state answer as is)",
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
        epilog=temporal_access.ENVIRONMENT_HELP,
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
    temporal_access.add_workflow_id_flags(status, "show")
    _add_shared_flags(status)

    cancel = verbs.add_parser(
        "cancel",
        help="cancel a running preemption workflow",
        description="Ask a running preemption workflow to cancel.",
    )
    temporal_access.add_workflow_id_flags(cancel, "cancel")
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


@dataclass(frozen=True)
class _Asked:
    """What the verb is to do, checked before anything is sent."""

    verb: str
    request: WorkflowRequest | None = None  # run: the signal's request
    workflow_id: str = ""  # status, cancel: the workflow addressed
    run_id: str | None = None  # status, cancel: its run, or the latest
    alarm: str | None = None  # list: this alarm's workflows only


def _asked(args: argparse.Namespace) -> _Asked:
    """The verb's flags, checked: InvalidInput before anything is sent."""
    if args.verb == "run":
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
        return _Asked(args.verb, request=request)
    if args.verb in ("status", "cancel"):
        return _Asked(
            args.verb,
            workflow_id=temporal_access.workflow_id_from_args(args),
            run_id=args.run_id or None,
        )
    if args.alarm is not None:
        require_not_empty(alarm=args.alarm)
    return _Asked(args.verb, alarm=args.alarm)


def run(args: argparse.Namespace) -> int:
    prog = f"preemptctl workflow {args.verb}"
    try:
        options = Options.from_args(args)
        require_not_empty(server=options.server, namespace=options.namespace, queue=options.queue)
        security = temporal_access.security_from_environment()
        asked = _asked(args)
    except InvalidInput as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    return temporal_access.run_with_temporal(
        prog, options, lambda runtime: _dispatch(options, asked, security, runtime)
    )


async def _dispatch(
    options: Options, asked: _Asked, security: TemporalSecurity, runtime: Runtime
) -> int:
    options.debug(f"connecting to {options.server}, namespace {options.namespace!r}")
    client = await temporal_access.connect(options, security, runtime)
    if asked.request is not None:
        return await _run(options, client, asked.request)
    if asked.verb == "list":
        return await _list(options, client, asked.alarm)
    if asked.verb == "status":
        return await _status(options, client, asked.workflow_id, asked.run_id)
    return await _cancel(options, client, asked.workflow_id, asked.run_id)


def _say_where(options: Options, request: WorkflowRequest) -> None:
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


async def _run(options: Options, client: PreemptionClient, request: WorkflowRequest) -> int:
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


async def _list(options: Options, client: PreemptionClient, alarm: str | None) -> int:
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
    options: Options, client: PreemptionClient, workflow_id: str, run_id: str | None
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
    options: Options, client: PreemptionClient, workflow_id: str, run_id: str | None
) -> int:
    from vsphere_preemption.temporal.client import CancelOutcome

    options.debug(f"requesting cancellation of workflow {workflow_id!r}")
    cancellation = await client.cancel(workflow_id, run_id)
    if cancellation.outcome is not CancelOutcome.CANCEL_REQUESTED or not cancellation.summary:
        raise temporal_access.CommandFailed(cancellation.why)
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
