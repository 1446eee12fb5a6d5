"""`preemptctl` entry point.

Each subcommand lives in its own module exposing `add_parser(subparsers)` and
`run(args) -> int`. Those modules import their heavy dependencies inside `run`,
so `preemptctl function` never pays for pyVmomi or the Temporal worker.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Any

# subcommand -> module under vsphere_preemption.cli
SUBCOMMANDS = {
    "function": "function_cmd",
    "worker": "worker_cmd",
    "workflow": "workflow_cmd",
    "plan": "plan_cmd",
    "check": "check_cmd",
    "history": "history_cmd",
    "pause": "pause_cmd",
    "unpause": "pause_cmd",
    "dev": "dev_cmd",
    "demo": "demo_cmd",
}


class _Version(argparse.Action):
    """`--version`: the installed package's version, looked up only when asked for (argparse's
    own version action wants the string when the parser is built, on every command's start)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        import vsphere_preemption

        print(f"{parser.prog} {vsphere_preemption.__version__}")  # on stdout, as argparse's
        parser.exit()


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every subcommand, or of `command` alone (its module only is imported:
    the function's cold start does not pay for the other commands' imports)."""
    parser = argparse.ArgumentParser(
        prog="preemptctl",
        description="Event-driven VM preemption for VMware vSphere.",
    )
    # The Go preemptctl's global flags, so `preemptctl --json workflow status` works as
    # there; `workflow` reads them (and accepts them after itself and its verbs too).
    parser.add_argument(
        "--verbose", action="store_true", default=argparse.SUPPRESS, help="explain each step"
    )
    parser.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
    )
    parser.add_argument("--version", action=_Version, help="print the version and exit")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # One module may serve two commands (pause, unpause): each module's parsers added once.
    names = (
        [SUBCOMMANDS[command]] if command in SUBCOMMANDS else dict.fromkeys(SUBCOMMANDS.values())
    )
    for module_name in names:
        module = importlib.import_module(f"vsphere_preemption.cli.{module_name}")
        module.add_parser(subparsers)
    return parser


def _command(argv: Sequence[str]) -> str | None:
    # The global flags take no value: the first word that is not a flag is the command.
    return next((arg for arg in argv if not arg.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(_command(argv)).parse_args(argv)
    module = importlib.import_module(f"vsphere_preemption.cli.{SUBCOMMANDS[args.command]}")
    try:
        code: int = module.run(args)
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
