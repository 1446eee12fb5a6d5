"""`preemptctl demo`: the whole system against a vCenter simulator, one preemption end to end."""

from __future__ import annotations

import argparse
from typing import Any

from vsphere_preemption.cli.dev_cmd import add_common_arguments

DESCRIPTION = """\
Starts a vCenter simulator (vcsim) with two clusters of 3 hosts and 14 VMs each (the
tag `preemptible` on VMs of both, priority tags low/normal/high, a protected VM), a
policy file for the worker (scope entity, at most 5 VMs, the priority levels, the
protection tag, a 5 s notice for a red alarm, also written into the guests), Temporal
with its web UI, the worker and the function, and a CloudEvents sink; then plays a
vCenter alarm turning red on the first cluster only (a real AlarmStatusChangedEvent
CloudEvent, sent to the function over HTTP), shows the workflow's steps, its plan
(victims by priority, the others left out and why), the notice (the scheduled event,
the victims still on with the notice in their guestinfo), what was preempted after it,
the annotation and the emitted event, then plays the alarm turning green and shows the
cancellation. With --resume the policy resumes on clear: the stopped VMs come back,
highest priority first, in batches. With --loop the policy preempts until relieved: a
memory target (allocation basis) one round cannot meet, met by a second round after a
short settle; each round is shown, and why the loop stopped.
Exits 0 when everything happened as expected, 1 otherwise (with the reason).

Ports default to those of `preemptctl dev`; 0 picks a free one.
"""


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="watch a preemption happen against a simulated vCenter",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common_arguments(
        parser, db_file_help="SQLite file of the dev server (default: a temporary one)"
    )
    parser.add_argument(
        "--keep", action="store_true",
        help="leave everything running afterwards, for a look in the Temporal UI (Ctrl-C stops)",
    )  # fmt: skip
    # One or the other: the loop's target is a tiny share of vcsim's memory, and a resume
    # after a run with a target brings back only what fits under it less the headroom
    # (none here), so together they would show VMs left off, not a resume.
    shape = parser.add_mutually_exclusive_group()
    shape.add_argument(
        "--resume", action="store_true",
        help="a policy that resumes on clear: when the alarm lowers, the stopped VMs are "
        "powered on again, highest priority first, 2 at a time, 2 s apart",
    )  # fmt: skip
    shape.add_argument(
        "--loop", action="store_true",
        help="a policy that preempts until relieved: a memory target on the allocation basis "
        "that round 1 (5 VMs) falls short of and round 2 meets, 2 s of settle between them",
    )  # fmt: skip
    parser.add_argument(
        "--timeout", type=float, default=120.0, metavar="SECONDS",
        help="how long to wait for the run, and for the cancellation (%(default)s)",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from vsphere_preemption.devtools.demo.run import DemoOptions, run_demo

    if args.db_file is not None:
        args.db_file.parent.mkdir(parents=True, exist_ok=True)
    return run_demo(
        DemoOptions(
            temporal_address=args.temporal_address,
            temporal_port=args.temporal_port,
            ui_port=args.ui_port,
            function_port=args.function_port,
            db_file=args.db_file,
            namespace=args.namespace,
            task_queue=args.task_queue,
            tag=args.tag,
            alarm_name=args.alarm_name,
            log_dir=args.log_dir,
            keep=args.keep,
            timeout=args.timeout,
            resume=args.resume,
            loop=args.loop,
        )
    )
