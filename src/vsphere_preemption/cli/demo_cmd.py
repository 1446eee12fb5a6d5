"""`preemptctl demo` (not built yet)."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> None:
    subparsers.add_parser("demo", help="(not built yet)")


def run(args: argparse.Namespace) -> int:
    print("preemptctl demo: not built yet")
    return 2
