"""`python -m vsphere_preemption worker` as a process of its own: started, killed, restarted.

For the tests and benchmarks that kill a worker mid-run (SIGKILL, no chance to clean up) and
start another on the same settings.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path


class WorkerProcess:
    def __init__(self, env: Mapping[str, str], log_file: Path) -> None:
        self.env = {**os.environ, **env}
        self.log_file = log_file
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        with open(self.log_file, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "vsphere_preemption", "worker"],
                env=self.env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        return self

    def kill(self) -> None:
        """SIGKILL: the worker dies as a crashed node would, mid-call."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def terminate(self) -> int:
        """SIGTERM: the worker's graceful shutdown; its exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)

    def stop(self) -> None:
        """Gone, whatever state it is in (for clean-up)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")
