"""The layer rules in pyproject.toml fail when a module breaks them.

Each case writes one bad import into a temporary copy of the package and runs lint-imports
on that copy: the run must fail and name the broken contract. An untouched copy must pass,
so a failure is the bad import's doing, not the copy's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _copy_house(tmp_path: Path) -> Path:
    shutil.copytree(
        ROOT / "src" / "vsphere_preemption",
        tmp_path / "src" / "vsphere_preemption",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "import_rules.py", tmp_path / "scripts")
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def _lint(house: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(house / "src"), COLUMNS="500")
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=house,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_package_as_it_is_keeps_every_contract(tmp_path: Path) -> None:
    result = _lint(_copy_house(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "bad_import", "contract"),
    [
        ("domain/model.py", "import structlog", "The domain is pure"),
        ("domain/alarm_rules.py", "import pyVim.connect", "The domain is pure"),
        ("domain/model.py", "import vsphere_preemption.settings", "The domain is pure"),
        ("domain/events.py", "import vsphere_preemption.wire", "Layers"),
        ("wire.py", "import pydantic", "The wire speaks the standard library"),
        ("wire.py", "import vsphere_preemption.logs", "The wire speaks the standard library"),
        ("temporal/contracts.py", "import pyVmomi", "Only the vsphere adapter imports"),
        ("function/app.py", "import pyVim", "Only the vsphere adapter imports"),
        ("vsphere/reads.py", "import vsphere_preemption.cli.main", "Layers"),
        ("temporal/client.py", "import vsphere_preemption.worker", "Layers"),
        ("settings/models.py", "import vsphere_preemption.temporal.client", "Layers"),
        ("function/app.py", "import vsphere_preemption.devtools.sink", "Runtime code never"),
        ("cli/workflow_cmd.py", "import vsphere_preemption.devtools.devservers", "Runtime code"),
        ("vsphere/client.py", "import vsphere_preemption.devtools.inventory", "Runtime code"),
    ],
)
def test_a_bad_import_breaks_its_contract(
    tmp_path: Path, module: str, bad_import: str, contract: str
) -> None:
    house = _copy_house(tmp_path)
    target = house / "src" / "vsphere_preemption" / module
    target.write_text(target.read_text() + f"\n{bad_import}  # noqa\n")

    result = _lint(house)

    assert result.returncode == 1, result.stdout + result.stderr
    broken = [line for line in result.stdout.splitlines() if line.endswith(" BROKEN")]
    assert any(line.startswith(contract) for line in broken), result.stdout
