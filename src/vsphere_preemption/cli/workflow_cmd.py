"""`preemptctl workflow` (not built yet)."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> None:
    subparsers.add_parser("workflow", help="(not built yet)")


def run(args: argparse.Namespace) -> int:
    print("preemptctl workflow: not built yet")
    return 2
