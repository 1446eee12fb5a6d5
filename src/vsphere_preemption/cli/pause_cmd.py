"""`preemptctl pause` and `preemptctl unpause`: the pause switch.

    preemptctl pause --reason TEXT [--for DURATION] [--alarm NAME [--entity MOREF]]
    preemptctl pause --list
    preemptctl unpause [--alarm NAME [--entity MOREF] | --all]

A pause is held by the task queue's pause registry workflow (temporal/pause_registry.py),
started by the first pause: it outlives this command, the worker, the function and (on its
database) Temporal. While a pause covers an alarm's run, the run is planned and shown but not
acted on; when it ends, the run goes on if its alarm is still raised. `--list` reads the
registry's answer. Exit codes as `preemptctl workflow`: 0 done, 1 Temporal said no, 2 invalid
input (refused before anything is sent).
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from vsphere_preemption.cli import temporal_access
from vsphere_preemption.cli.temporal_access import Options
from vsphere_preemption.cli.workflow_input import InvalidInput, require_not_empty
from vsphere_preemption.domain.durations import format_seconds, parse_seconds
from vsphere_preemption.domain.pauses import Pause, pause_expiry, pause_problem, scope_text
from vsphere_preemption.wire import go_json, pauses_workflow_id, reply_to_problem

if TYPE_CHECKING:
    from temporalio.runtime import Runtime

    from vsphere_preemption.settings import TemporalSecurity


def add_parser(subparsers: Any) -> None:
    pause = subparsers.add_parser(
        "pause",
        help="hold preemptions: everything, one alarm, or one alarm on one entity",
        description=(
            "Pause preemption: a raising alarm's run is planned and shown ('paused until ...') "
            "but nothing is acted on until the pause ends (unpause, or --for runs out); then "
            "the run goes on if its alarm is still raised. --list shows the pauses."
        ),
        epilog=temporal_access.ENVIRONMENT_HELP,
    )
    pause.add_argument("--reason", help="why (shown wherever the pause is): required")
    pause.add_argument(
        "--for", dest="duration", metavar="DURATION",
        help="end by itself after this long (90m, 4h, 48h); default: until unpaused",
    )  # fmt: skip
    pause.add_argument(
        "--reply-to", default=None, metavar="URL",
        help="where to announce the pause and its end as CloudEvents (default $K_SINK)",
    )  # fmt: skip
    pause.add_argument("--list", action="store_true", help="show the pauses, change nothing")
    _scope_flags(pause)
    _output_flags(pause)
    pause.set_defaults(verb="pause")

    unpause = subparsers.add_parser(
        "unpause",
        help="lift a pause (the same --alarm/--entity as it was set with), or --all",
        description="Lift the pause of exactly this scope, or every pause with --all.",
        epilog=temporal_access.ENVIRONMENT_HELP,
    )
    _scope_flags(unpause)
    unpause.add_argument("--all", action="store_true", help="lift every pause")
    _output_flags(unpause)
    unpause.set_defaults(verb="unpause")


def _scope_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--alarm", default=None, help="only this alarm (default: every alarm)")
    parser.add_argument(
        "--entity", default=None, metavar="MOREF",
        help="only this alarmed entity of --alarm (a moref value: domain-c7)",
    )  # fmt: skip


def _output_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("connection and output")
    temporal_access.add_connection_flags(group)
    group.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS,
        help="print the registry's answer (or the signal sent) as JSON",
    )  # fmt: skip


# What --list cannot be combined with: it shows every pause and changes none, so a scope, a
# reason or an expiry beside it would be silently ignored, and the operator misled.
_LIST_ALONE = {"alarm": "--alarm", "entity": "--entity", "reason": "--reason",
               "duration": "--for", "reply_to": "--reply-to"}  # fmt: skip


def _scope_value(value: str | None, flag: str) -> str | None:
    """A scope flag's value, stripped; a blank one is refused rather than read as absent: an
    unset shell variable (`--alarm "$ALARM"`) must not turn into "every alarm"."""
    if value is None:
        return None
    if not value.strip():
        raise InvalidInput(f"{flag} must not be empty (leave it out for every {flag[2:]})")
    return value.strip()


def _body(args: argparse.Namespace) -> dict[str, Any]:
    """The signal to the registry, checked: InvalidInput before anything is sent."""
    alarm = _scope_value(args.alarm, "--alarm")
    entity = _scope_value(args.entity, "--entity")
    by = os.environ.get("USER") or _user()
    if args.verb == "unpause":
        if args.all and (alarm or entity):
            raise InvalidInput("--all lifts every pause: not with --alarm or --entity")
        if entity and not alarm:
            raise InvalidInput("--entity names an entity of one alarm: give --alarm too")
        return {"alarm": alarm, "entity": entity, "all": bool(args.all), "by": by}
    if args.list:
        given = [flag for name, flag in _LIST_ALONE.items() if getattr(args, name) is not None]
        if given:
            raise InvalidInput(
                f"--list shows every pause and changes none: not with {', '.join(given)}"
            )
        return {}
    reason = args.reason or ""
    problem = pause_problem(alarm, entity, reason)
    if problem is not None:
        raise InvalidInput(problem.replace("a pause needs a reason", "--reason is required"))
    seconds = _for_seconds(args.duration)
    reply_to = _reply_to(args.reply_to)
    return {
        "alarm": alarm,
        "entity": entity,
        "reason": reason.strip(),
        "forSeconds": seconds,
        "by": by,
        "replyTo": reply_to,
    }


def _for_seconds(duration: str | None) -> float | None:
    """--for in seconds, checked; None: until unpaused."""
    if duration is None:
        return None
    try:
        seconds = parse_seconds(duration)
        # The registry drops a pause whose end no clock can tell: refuse it here, in words.
        pause_expiry(seconds, datetime.now(UTC))
    except ValueError as exc:
        raise InvalidInput(f"--for: {exc}") from None
    if seconds <= 0:
        raise InvalidInput("--for must be longer than zero (90m, 4h, 48h)")
    return seconds


def _reply_to(given: str | None) -> str:
    """--reply-to, by default K_SINK, checked."""
    reply_to = given if given is not None else os.environ.get("K_SINK", "")
    if reply_to and (why := reply_to_problem(reply_to)) is not None:
        # Name where the bad URL came from: an operator who gave no --reply-to looks for it
        # in the environment only if told to.
        source = "--reply-to" if given is not None else "K_SINK (the default --reply-to)"
        raise InvalidInput(f"{source}: {why}")
    return reply_to


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a uid without a name, as in the image
        return ""


def run(args: argparse.Namespace) -> int:
    prog = f"preemptctl {args.verb}"
    try:
        options = Options.from_args(args)
        require_not_empty(server=options.server, namespace=options.namespace)
        require_not_empty(queue=options.queue)
        body = _body(args)
        security = temporal_access.security_from_environment()
    except InvalidInput as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    return temporal_access.run_with_temporal(
        prog, options, lambda runtime: _dispatch(args, options, body, security, runtime)
    )


async def _dispatch(
    args: argparse.Namespace,
    options: Options,
    body: dict[str, Any],
    security: TemporalSecurity,
    runtime: Runtime,
) -> int:
    client = await temporal_access.connect(options, security, runtime)
    if args.verb == "pause" and args.list:
        book = await client.read_pauses(pauses_workflow_id(options.queue))
        now = datetime.now(UTC)
        pauses = [Pause.from_wire(p) for p in book.pauses]
        active = [p for p in pauses if p.active(now)]
        if options.json:
            print(go_json([p.to_wire() for p in active]).decode())
            return 0
        if not active:
            print("nothing paused")
        for pause in active:
            print(_line(pause, now))
        return 0
    if args.verb == "pause":
        registry = await client.pause(body)
        until = (
            "until unpaused"
            if body["forSeconds"] is None
            else f"for {format_seconds(body['forSeconds'])}"
        )
        what = f"paused {scope_text(body['alarm'], body['entity'])} {until}: {body['reason']}"
    else:
        registry = await client.unpause(body)
        scope = "every pause" if body["all"] else scope_text(body["alarm"], body["entity"])
        what = f"unpause of {scope} sent"
    if options.json:
        print(go_json({"registry": registry, **body}).decode())
    else:
        print(f"{what} (registry {registry})")
    return 0


def _line(pause: Pause, now: datetime) -> str:
    if pause.until is None:
        until = "until unpaused"
    else:
        left = format_seconds(max(round((pause.until - now).total_seconds()), 0))
        until = f"until {pause.until.isoformat().replace('+00:00', 'Z')} ({left} left)"
    by = f" by {pause.by}" if pause.by else ""
    return f"{pause.scope()} {until}{by}: {pause.reason}"
