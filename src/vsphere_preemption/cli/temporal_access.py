"""What every `preemptctl` command that talks to Temporal shares: the connection flags and
their defaults, the TEMPORAL_TLS* and TEMPORAL_API_KEY_FILE variables (read as the function
and the worker read them), the flags that address one workflow, and the answer to an error
(one line, exit status 1).

`workflow`, `history`, `pause` and `unpause` are built from it; each keeps only its own flags,
its calls and its output.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

from vsphere_preemption.cli.workflow_input import InvalidInput, address_workflow
from vsphere_preemption.domain.vcenters import vcenter_host, vcenter_task_queue
from vsphere_preemption.domain.workflow_ids import IdMode
from vsphere_preemption.wire import CLI_WORKFLOW_ID, DEFAULT_NAMESPACE, DEFAULT_TASK_QUEUE

if TYPE_CHECKING:
    from temporalio.runtime import Runtime

    from vsphere_preemption.settings import TemporalSecurity
    from vsphere_preemption.temporal.client import PreemptionClient

DEFAULT_SERVER = "localhost:7233"

# For the commands' --help.
ENVIRONMENT_HELP = (
    "Temporal over TLS: TEMPORAL_TLS (true/false; on when any of the others is set), "
    "TEMPORAL_TLS_CA (CA bundle, PEM), TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY (client "
    "certificate and key for mutual TLS), TEMPORAL_TLS_SERVER_NAME, TEMPORAL_API_KEY_FILE "
    "(a file holding the API key)."
)


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


@dataclass(frozen=True)
class Options:
    """The connection and output flags, wherever they were given, else their defaults.

    The flags are accepted at more than one level (`preemptctl --json workflow status`, as
    the Go CLI's persistent flags; after `workflow`; after its verb) with suppressed argparse
    defaults, because a verb's default would otherwise overwrite a value given before it: the
    defaults are applied here, once.
    """

    server: str = DEFAULT_SERVER
    namespace: str = DEFAULT_NAMESPACE
    queue: str = DEFAULT_TASK_QUEUE
    verbose: bool = False
    json: bool = False

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Options:
        """The options `args` gives; InvalidInput for a --vcenter that cannot name a queue."""
        given = cls(**{f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)})
        return replace(given, queue=queue_of(args, given.queue))

    def debug(self, message: str) -> None:
        if self.verbose:
            print(f"preemptctl: {message}", file=sys.stderr, flush=True)


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


def security_from_environment() -> TemporalSecurity:
    """The settings from the environment, or InvalidInput naming every bad variable (never a
    file's content)."""
    from vsphere_preemption.settings import SettingsError, TemporalAccess, load

    try:
        return load(TemporalAccess).temporal_security
    except SettingsError as exc:
        raise InvalidInput("; ".join(exc.problems) or str(exc)) from None


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


def workflow_id_from_args(args: argparse.Namespace) -> str:
    """The workflow ID the flags of `add_workflow_id_flags` name (default the CLI's own)."""
    return address_workflow(
        workflow_id_flag=args.workflow_id,
        alarm=args.alarm,
        entity=args.entity,
        id_mode=None if args.id_mode is None else IdMode(args.id_mode),
        default=CLI_WORKFLOW_ID,
    )


async def connect(
    options: Options,
    security: TemporalSecurity,
    runtime: Runtime,
    *,
    task_queue: str | None = None,
) -> PreemptionClient:
    """The client of the server and namespace `options` name, on `task_queue` (by default
    the options' queue)."""
    from vsphere_preemption.temporal.client import PreemptionClient

    return await PreemptionClient.connect(
        options.server,
        namespace=options.namespace,
        task_queue=options.queue if task_queue is None else task_queue,
        runtime=runtime,
        security=security,
    )


class CommandFailed(Exception):
    """The command could not do its job; `str()` is the one line the user sees."""


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


def run_with_temporal(
    prog: str, options: Options, main: Callable[[Runtime], Coroutine[Any, Any, int]]
) -> int:
    """`main`'s exit status, run with a Temporal runtime of its own (collected_runtime);
    an error is answered by `error_handler`."""
    from vsphere_preemption.temporal.collected_runtime import run_collected

    return run_collected(main, error_handler(prog, verbose=options.verbose))
