"""`preemptctl history`: the runs a preemption workflow remembers, for one workflow or all.

One workflow (`--workflow-id ID`, or `--alarm NAME [--entity MOREF] [--go-id]` as `workflow
status` addresses it; default the CLI's `preempctl-run`), `-r` for one run of it: the running
workflow's `history` query, or a completed run's result (its `history` field).

`--all [--alarm NAME] [--since DURATION] [--limit N]`: every PreemptVMsWorkflow of the
namespace, the running ones by their query and the closed ones through Temporal's visibility
and their results, the runs merged oldest first with each one's workflow ID.

Exit codes as `preemptctl workflow`: 0 done, 1 the server or the workflow said no (one line
on stderr), 2 invalid input (refused before anything is sent).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from vsphere_preemption.cli import temporal_access
from vsphere_preemption.cli.temporal_access import Options
from vsphere_preemption.cli.workflow_input import InvalidInput, require_not_empty
from vsphere_preemption.domain.durations import parse_seconds
from vsphere_preemption.wire import WORKFLOW_TYPE, go_json

if TYPE_CHECKING:
    from temporalio.runtime import Runtime

    from vsphere_preemption.cli.history_render import HistoryRow
    from vsphere_preemption.temporal.client import ListedWorkflow, PreemptionClient, RunHistory

PROG = "preemptctl history"
# --all shows the newest runs, at most this many unless --limit says otherwise.
DEFAULT_LIMIT = 100
# --all reads at most this many closed workflows (the most recently closed), one result each.
CLOSED_READ_LIMIT = 1000
# Results read at once.
CONCURRENCY = 16


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "history",
        help="show the preemption runs a workflow remembers, or every workflow's",
        description=(
            f"Show the runs a {WORKFLOW_TYPE} remembers (its 'history' query while it runs, "
            "its result's history once completed), for one workflow or, with --all, for "
            "every one in the namespace, running or closed, merged oldest first."
        ),
        epilog=temporal_access.ENVIRONMENT_HELP,
    )
    temporal_access.add_workflow_id_flags(parser, "show")
    every = parser.add_argument_group("across all workflows")
    every.add_argument(
        "--all", action="store_true",
        help="every preemption workflow, running and closed (Temporal's visibility, which "
        "lags a start or a close by a moment); with --alarm, that alarm's only",
    )  # fmt: skip
    every.add_argument(
        "--since", default=None, metavar="DURATION",
        help="with --all: only the runs started within this long (90s, 30m, 24h)",
    )  # fmt: skip
    every.add_argument(
        "--limit", type=int, default=None, metavar="N",
        help=f"with --all: the newest N runs (default {DEFAULT_LIMIT})",
    )  # fmt: skip
    group = parser.add_argument_group("connection and output")
    sup = argparse.SUPPRESS
    temporal_access.add_connection_flags(group, queue=False)
    group.add_argument(
        "--json", action="store_true", default=sup,
        help="print the runs as a JSON list: each record as the workflow wrote it, with "
        "workflowID and runID",
    )  # fmt: skip


@dataclass(frozen=True)
class _One:
    """One workflow's runs: its ID, and one run of it or the latest."""

    workflow_id: str
    run_id: str | None


@dataclass(frozen=True)
class _All:
    """--all, checked: every workflow's runs (of `alarm`; started within `since`)."""

    alarm: str | None
    since: timedelta | None
    limit: int


def _check_all(args: argparse.Namespace) -> _All:
    for flag, value in (
        ("--workflow-id", args.workflow_id),
        ("--entity", args.entity),
        ("--go-id/--id-mode", args.id_mode),
    ):
        if value is not None:
            raise InvalidInput(f"--all reads every workflow: {flag} addresses one, not with --all")
    if args.run_id:
        raise InvalidInput("--all reads every workflow: --run-id names a run of one workflow")
    if args.alarm is not None:
        require_not_empty(alarm=args.alarm)
    since = None
    if args.since is not None:
        try:
            since = timedelta(seconds=parse_seconds(args.since))
        except ValueError as exc:
            raise InvalidInput(f"--since: {exc}") from None
        if since <= timedelta(0):
            raise InvalidInput("--since must be longer than zero (90s, 30m, 24h)")
    limit = DEFAULT_LIMIT if args.limit is None else args.limit
    if limit < 1:
        raise InvalidInput(f"--limit must be at least 1, got {limit}")
    return _All(alarm=args.alarm.strip() if args.alarm else None, since=since, limit=limit)


def _check_one(args: argparse.Namespace) -> _One:
    for flag, value in (("--since", args.since), ("--limit", args.limit)):
        if value is not None:
            raise InvalidInput(f"{flag} is for --all (every workflow's runs)")
    return _One(temporal_access.workflow_id_from_args(args), args.run_id or None)


def run(args: argparse.Namespace) -> int:
    try:
        options = Options.from_args(args)
        require_not_empty(server=options.server, namespace=options.namespace)
        security = temporal_access.security_from_environment()
        asked = _check_all(args) if args.all else _check_one(args)
    except InvalidInput as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2

    async def main(runtime: Runtime) -> int:
        options.debug(f"connecting to {options.server}, namespace {options.namespace!r}")
        client = await temporal_access.connect(options, security, runtime, task_queue="")
        if isinstance(asked, _All):
            return await _all(options, client, asked)
        return await _one(options, client, asked)

    return temporal_access.run_with_temporal(PROG, options, main)


def _rows(history: RunHistory) -> list[HistoryRow]:
    from vsphere_preemption.cli.history_render import HistoryRow

    summary = history.summary
    return [HistoryRow(summary.workflow_id, summary.run_id, r) for r in history.records or ()]


async def _one(options: Options, client: PreemptionClient, one: _One) -> int:
    from vsphere_preemption.cli.history_render import (
        history_json,
        render_history,
        render_workflow_heading,
    )

    options.debug(f"reading the runs of workflow {one.workflow_id!r}")
    history = await client.history(one.workflow_id, one.run_id)
    if history.records is None:
        raise temporal_access.CommandFailed(history.why)
    rows = _rows(history)
    if options.json:
        print(go_json(history_json(rows)).decode())
        return 0
    summary = history.summary
    now = datetime.now(UTC)
    print(
        render_workflow_heading(
            summary.workflow_id, summary.run_id, summary.status_text, summary.start_time, now
        )
    )
    print(render_history(rows, workflow_column=False))
    return 0


async def _all(options: Options, client: PreemptionClient, every: _All) -> int:
    from vsphere_preemption.cli.history_render import history_json, in_time_order, render_history

    now = datetime.now(UTC)
    cutoff = None if every.since is None else now - every.since
    listed, notes = await _list_all(options, client, every, cutoff)
    rows, unread = await _read_all(options, client, listed)
    notes += unread
    if cutoff is not None:
        rows = [r for r in rows if r.started is not None and r.started >= cutoff]
    ordered = in_time_order(rows)
    shown = ordered[-every.limit :]
    if len(shown) < len(ordered):
        notes.insert(0, f"the newest {len(shown)} of {len(ordered)} runs (--limit)")
    if options.json:
        print(go_json(history_json(shown)).decode())
        for note in notes:
            print(f"{PROG}: {note}", file=sys.stderr)
        return 0
    print(render_history(shown, workflow_column=True, notes=notes))
    return 0


async def _list_all(
    options: Options, client: PreemptionClient, every: _All, cutoff: datetime | None
) -> tuple[list[ListedWorkflow], list[str]]:
    """The workflow runs to read, running and closed, and the notes the listing leaves."""
    import asyncio

    which = f" of alarm {every.alarm!r}" if every.alarm else ""
    options.debug(f"listing the running and closed {WORKFLOW_TYPE}s{which}")
    running, closed = await asyncio.gather(
        client.list_workflows(every.alarm),
        client.list_closed(every.alarm, closed_since=cutoff, limit=CLOSED_READ_LIMIT),
    )
    notes: list[str] = []
    if len(closed) >= CLOSED_READ_LIMIT:
        notes.append(
            f"only the {CLOSED_READ_LIMIT} most recently closed workflows were read: "
            "--since narrows the search"
        )
    # A workflow that closed between the two lists is in both: its closed run counts.
    closed_runs = {w.summary.run_id for w in closed}
    return [w for w in running if w.summary.run_id not in closed_runs] + closed, notes


async def _read_all(
    options: Options, client: PreemptionClient, listed: list[ListedWorkflow]
) -> tuple[list[HistoryRow], list[str]]:
    """The runs of each listed workflow run, and a note for each that gave none."""
    import asyncio

    from vsphere_preemption.temporal.client import TemporalError

    options.debug(f"reading the runs of {len(listed)} workflow run(s)")
    gate = asyncio.Semaphore(CONCURRENCY)

    async def read(workflow: ListedWorkflow) -> RunHistory | str:
        async with gate:
            try:
                # A closed run without a result is not queried: each such query waits for
                # a worker to replay the run, and --all would wait for all of them.
                return await client.history_of(workflow.summary, ask_worker=False)
            except TemporalError as exc:
                return str(exc)

    rows: list[HistoryRow] = []
    notes: list[str] = []
    for answer in await asyncio.gather(*(read(w) for w in listed)):
        if isinstance(answer, str):
            notes.append(answer)
        elif answer.records is not None:
            rows += _rows(answer)
        elif answer.summary.status != "continued_as_new":  # its runs are in its successor's
            notes.append(answer.why)
    return rows, notes
