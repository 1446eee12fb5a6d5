"""Run pytest so that the temporalio exit-time abort cannot change the verdict.

temporalio's Rust core can abort the interpreter while it shuts down (exit code
134 after every test has passed; temporalio/sdk-python#300). The verdict must come
from pytest, not from how the process died, so a conftest hook writes pytest's own
exit status to a file at session end, and this wrapper decides:

- status file present: its value is the verdict, whatever the process exit code
  (an abort after a green run stays green, after a red run stays red);
- status file missing: pytest never finished, so the run fails, loudly.

It also measures coverage (pytest-cov, of the code the test process runs; programs the
tests start as processes are not counted) and ends with one line that gives the total.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="pytest-status-") as tmp:
        status_file = Path(tmp) / "status"
        env = dict(os.environ, VSPHERE_PREEMPTION_PYTEST_STATUS=str(status_file))
        coverage_file = Path(tmp) / "coverage"
        env["COVERAGE_FILE"] = str(coverage_file)
        argv = [sys.executable, "-m", "pytest", "--cov", "--cov-report=", *sys.argv[1:]]
        proc = subprocess.run(argv, env=env, check=False)
        total = subprocess.run(
            [sys.executable, "-m", "coverage", "report", "--format=total"],
            env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if total.returncode == 0:
            print(f"coverage: {total.stdout.strip()}% of vsphere_preemption's lines", flush=True)
        if not status_file.exists():
            print(
                f"run_pytest: pytest ended with exit code {proc.returncode} before it finished "
                "its session; failing the run",
                file=sys.stderr,
            )
            return proc.returncode or 1
        status = int(status_file.read_text().strip())
        if status != proc.returncode:
            print(
                f"run_pytest: process exit code {proc.returncode} (interpreter teardown), "
                f"pytest's verdict {status}: using pytest's verdict",
                file=sys.stderr,
            )
        return status


if __name__ == "__main__":
    sys.exit(main())
