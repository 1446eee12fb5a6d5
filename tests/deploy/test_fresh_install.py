"""The fresh-machine path: the set-up's install step (scripts/install-lock) on a new venv made by
the interpreter itself, so with the pip the interpreter bundles (23.2.1 with Python 3.11.7),
from an index that holds versions newer than the lock, then `preemptctl --help`.

The index is a folder (pip's `--no-index --find-links`): every file of the lock for this
interpreter and platform, downloaded with the lock's hashes, and next to them a newer
`coverage` than the lock pins, as the real index held the day the bundled pip failed
(issue 15: pytest-cov asks for `coverage[toml]>=7.10.6`; pip 23.2.1 resolved that extra
against the index, found a coverage the lock does not pin and refused the whole lock). A
set-up that lets any resolver look past the lock, or that depends on a newer pip than the
interpreter bundles, fails here. The second test shows the trap is armed: a resolver on
this index takes the newer coverage.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.version import Version

from tests.deploy.test_lock import lock

ROOT = Path(__file__).parents[2]
# The interpreter this venv was made from: `python -m venv` with it gives its bundled pip.
BASE_PYTHON = getattr(sys, "_base_executable", sys.executable)
NEWER_COVERAGE = "99.0.0"


def bundled_pip_version() -> str:
    out = subprocess.run(
        [BASE_PYTHON, "-c", "import ensurepip; print(ensurepip.version())"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return out.stdout.strip()


def fake_wheel(folder: Path, name: str, version: str) -> Path:
    """A valid, empty wheel `name` `version`: what a resolver would take as the newest."""
    dist_info = f"{name}-{version}.dist-info"
    files = {
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    record_lines = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record_lines.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    record_lines.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = "\n".join(record_lines) + "\n"
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel


def pip_env(index: Path) -> dict[str, str]:
    """pip reads only `index`: no network, no user or site configuration."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUAL_ENV"))}
    return env | {
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(index),
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("index")
    for name in ("bootstrap", "dev"):
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
             "--no-deps", "--require-hashes", "-r", str(ROOT / "requirements" / f"{name}.txt"),
             "-d", str(folder)],
            check=True,
        )  # fmt: skip
    locked = lock("dev")["coverage"][0]
    assert Version(NEWER_COVERAGE) > Version(locked)
    fake_wheel(folder, "coverage", NEWER_COVERAGE)
    return folder


def test_the_install_step_installs_the_lock_with_the_bundled_pip_whatever_the_index_holds(
    index: Path, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    done = subprocess.run(
        [str(ROOT / "scripts" / "install-lock"), str(venv)],
        env=pip_env(index) | {"PYTHON": BASE_PYTHON},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    # The venv began with the interpreter's own pip, and the pinned one took over.
    assert f"with pip {bundled_pip_version()}" in done.stderr
    pinned = lock("bootstrap")["pip"][0]
    assert f"installing the lock (requirements/dev.txt) with pip {pinned}" in done.stderr

    helped = subprocess.run(
        [str(venv / "bin" / "preemptctl"), "--help"], capture_output=True, text=True, check=False
    )
    assert helped.returncode == 0, helped.stderr
    assert "workflow" in helped.stdout

    frozen = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "list", "--format=freeze"],
        env=pip_env(index), capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    installed = dict(re.findall(r"^([^=\s]+)==(\S+)$", frozen, re.MULTILINE))
    installed = {k.lower().replace("_", "-"): v for k, v in installed.items()}
    assert installed["coverage"] != NEWER_COVERAGE
    for package, (version, marker, _) in lock("dev").items():
        if marker is None or Marker(marker).evaluate():
            assert installed.get(package) == version, package


def test_a_resolver_on_this_index_takes_a_version_the_lock_does_not_pin(
    index: Path, tmp_path: Path
) -> None:
    """The trap is armed: what pytest-cov asks for resolves past the lock here, as it did on the
    real index with Python 3.11.7's bundled pip (which then refused the lock)."""
    venv = tmp_path / "venv"
    subprocess.run([BASE_PYTHON, "-m", "venv", "--without-pip", str(venv)], check=True)
    report = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
         "--dry-run", "--ignore-installed", "--no-deps", "--report", str(report),
         "coverage[toml]>=7.10.6"],
        env=pip_env(index), capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    chosen = json.loads(report.read_text())["install"]
    assert [item["metadata"]["version"] for item in chosen] == [NEWER_COVERAGE]
