"""`preemptctl dev`: the whole system on one machine against a vCenter you name."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from vsphere_preemption.wire import DEFAULT_NAMESPACE, DEFAULT_TAG, DEFAULT_TASK_QUEUE


def _state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "vsphere-preemption"


def add_common_arguments(
    parser: argparse.ArgumentParser, *, db_file_help: str | None = None
) -> None:
    """Flags `dev` and `demo` share; `db_file_help` set: --db-file has no default."""
    parser.add_argument(
        "--temporal-address", metavar="HOST:PORT",
        help="use this Temporal server instead of starting a dev server",
    )  # fmt: skip
    parser.add_argument("--temporal-port", type=int, default=7233, help="dev server port (7233)")
    parser.add_argument("--ui-port", type=int, default=8233, help="Temporal web UI port (8233)")
    # No default path here: building the parser must not need a home directory (the image
    # runs as a uid without one, and `preemptctl --version` builds every parser).
    parser.add_argument(
        "--db-file", type=Path, default=None,
        help=db_file_help
        or "SQLite file of the dev server, so workflows survive a restart "
        "($XDG_STATE_HOME or ~/.local/state, then vsphere-preemption/temporal.db)",
    )  # fmt: skip
    parser.add_argument("--function-port", type=int, default=8080, help="function port (8080)")
    parser.add_argument("--namespace", default=DEFAULT_NAMESPACE)
    parser.add_argument("--task-queue", default=DEFAULT_TASK_QUEUE)
    parser.add_argument("--tag", default=DEFAULT_TAG, help="vSphere tag of preemptible VMs")
    parser.add_argument("--alarm-name", default="cluster-cpu-above-80")
    parser.add_argument("--log-dir", type=Path, help="write each program's log to a file here")


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "dev",
        help="run Temporal, the worker and the function on this machine",
        description=(
            "Starts a Temporal dev server (with its web UI), the worker and the function, "
            "and prints their settings. Needs a vCenter: VCENTER_URL and a directory with "
            "files `username` and `password` (VCENTER_SECRET_PATH). Ctrl-C stops everything."
        ),
    )
    add_common_arguments(parser)
    parser.add_argument("--sink", default=os.environ.get("K_SINK", ""), help="K_SINK for events")


def run(args: argparse.Namespace) -> int:
    from vsphere_preemption.devtools.devservers import ServerFailed, ToolMissing
    from vsphere_preemption.devtools.devstack import (
        DevStack,
        VCenterTarget,
        print_settings,
        wait_until_stopped,
    )

    url = os.environ.get("VCENTER_URL", "")
    secret_path = Path(os.environ.get("VCENTER_SECRET_PATH", "/var/bindings/vsphere"))
    if not url:
        print(
            "preemptctl dev: VCENTER_URL is required (and VCENTER_SECRET_PATH with files "
            "`username` and `password`); or run `preemptctl demo` for a simulated vCenter",
            file=sys.stderr,
        )
        return 2
    if not (secret_path / "username").is_file() or not (secret_path / "password").is_file():
        print(
            f"preemptctl dev: {secret_path} needs files `username` and `password`", file=sys.stderr
        )
        return 2
    from vsphere_preemption.settings import SettingsError, parse_flag

    try:  # the spellings the worker accepts, since the worker is handed the same setting
        insecure = parse_flag("VCENTER_INSECURE", os.environ.get("VCENTER_INSECURE", "false"))
    except SettingsError as exc:
        print(f"preemptctl dev: {exc}", file=sys.stderr)
        return 2
    db_file: Path = args.db_file or _state_dir() / "temporal.db"
    db_file.parent.mkdir(parents=True, exist_ok=True)
    stack = DevStack(
        vcenter=VCenterTarget(url=url, secret_path=secret_path, insecure=insecure),
        temporal_address=args.temporal_address,
        db_file=db_file,
        temporal_port=args.temporal_port,
        ui_port=args.ui_port,
        function_port=args.function_port,
        namespace=args.namespace,
        task_queue=args.task_queue,
        tag=args.tag,
        alarm_name=args.alarm_name,
        sink=args.sink,
        log_dir=args.log_dir,
    )
    try:
        stack.start()
    except (ServerFailed, ToolMissing) as exc:
        print(f"preemptctl dev: {exc}", file=sys.stderr)
        return 1
    try:
        print_settings(stack)
        return wait_until_stopped(stack)
    finally:
        stack.stop()
