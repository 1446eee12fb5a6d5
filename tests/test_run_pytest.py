"""scripts/run_pytest.py: pytest's verdict stands, however the interpreter dies afterwards.

temporalio can abort the interpreter at exit (code 134) after every test has run
(sdk-python#300). These runs put exactly that abort into a small pytest session, with
our real session hook (tests/conftest.py) and the real wrapper.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WRAPPER = ROOT / "scripts" / "run_pytest.py"

CONFTEST = """
import atexit, os
from tests.conftest import pytest_sessionfinish  # the hook under test

if os.environ.get("ABORT_AT_EXIT"):
    atexit.register(os.abort)  # what temporalio's core can do at interpreter exit
if os.environ.get("ABORT_AT_COLLECTION"):
    os.abort()  # dies before pytest has a verdict
"""


def run(tmp_path: Path, test_body: str, **env: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_sample.py").write_text(f"def test_sample():\n    {test_body}\n")
    environ = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    return subprocess.run(
        [sys.executable, str(WRAPPER), str(tmp_path), "-q", "-p", "no:cacheprovider"],
        cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(("body", "verdict"), [("assert True", 0), ("assert False", 1)])
def test_without_an_abort_the_verdict_is_pytests(tmp_path: Path, body: str, verdict: int) -> None:
    assert run(tmp_path, body).returncode == verdict


def test_an_abort_after_a_green_run_stays_green(tmp_path: Path) -> None:
    done = run(tmp_path, "assert True", ABORT_AT_EXIT="1")
    assert done.returncode == 0
    assert "exit code -6" in done.stderr or "exit code 134" in done.stderr, done.stderr


def test_an_abort_after_a_red_run_stays_red(tmp_path: Path) -> None:
    assert run(tmp_path, "assert False", ABORT_AT_EXIT="1").returncode == 1


def test_a_crash_before_pytest_finished_fails_loudly(tmp_path: Path) -> None:
    done = run(tmp_path, "assert True", ABORT_AT_COLLECTION="1")
    assert done.returncode != 0
    assert "before it finished" in done.stderr
