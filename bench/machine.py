"""What every benchmark does around its figures: quiet logs, and the machine it ran on."""

from __future__ import annotations

import logging
import os
import platform
import sys
from pathlib import Path
from typing import Any

import structlog


def quiet_logs() -> None:
    """Figures, not logs: only the adapter's and SDK's warnings are printed."""
    logging.basicConfig(level=logging.WARNING)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


def machine() -> dict[str, Any]:
    """The machine the figures were taken on, and the command that took them."""
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg_at_end": os.getloadavg(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])
