"""The release story: one version, written once (pyproject.toml's `version`) and followed by
everything that names it; the license file the metadata names; a changelog entry for the
version; an sdist of the package and its docs, without the tests and benchmarks."""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from email.parser import Parser
from importlib.metadata import metadata
from pathlib import Path

import pytest
import yaml

import vsphere_preemption
from vsphere_preemption.cli.main import main

ROOT = Path(__file__).parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION: str = PYPROJECT["project"]["version"]
CHART = yaml.safe_load((ROOT / "deploy/helm/vsphere-preemption/Chart.yaml").read_text())


def test_the_version_is_written_once_and_everything_follows_it() -> None:
    # The package's metadata (what pip installed from pyproject.toml) and its __version__.
    assert metadata("vsphere-preemption")["Version"] == VERSION
    assert vsphere_preemption.__version__ == VERSION
    # The chart's appVersion: the image tag the chart deploys by default.
    assert CHART["appVersion"] == VERSION
    # The image's label is the build argument VERSION, which the build checks against the
    # package it built (tests/deploy/test_image.py builds it and reads the label); nothing in
    # the Dockerfile or in the code spells a version.
    written = re.compile(rf"(?<![\w.]){re.escape(VERSION)}(?![\w.])")
    for path in [ROOT / "Dockerfile", *(ROOT / "src").rglob("*.py")]:
        assert not written.search(path.read_text()), path


def test_preemptctl_version_prints_the_packages_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "vsphere_preemption", "--version"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert (done.returncode, done.stdout, done.stderr) == (0, f"preemptctl {VERSION}\n", "")


def test_version_needs_no_command_and_wins_over_one() -> None:
    # argparse acts on --version as soon as it reads it: the required command is not asked for.
    for argv in (["--version"], ["--version", "function"]):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code in (0, None)


def test_the_changelog_has_an_entry_for_the_version() -> None:
    changelog = (ROOT / "CHANGELOG.md").read_text()
    headings = re.findall(r"^## \[?([^\]\s]+)\]?", changelog, re.MULTILINE)
    assert headings, "no version headings"
    # The newest first: the version being released, or Unreleased above it.
    released = [h for h in headings if h != "Unreleased"]
    assert released[0] == VERSION, headings


def test_the_license_is_the_one_the_metadata_names() -> None:
    assert PYPROJECT["project"]["license"] == "Apache-2.0"  # an SPDX expression (PEP 639)
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text  # the whole text, not a notice
    assert PYPROJECT["project"]["license-files"] == ["LICENSE"]


def hatchling(target: str, out: Path) -> Path:
    """A distribution built by the locked build backend, as `pip wheel` or `build` would."""
    done = subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-t", target, "-d", str(out)],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (built,) = out.iterdir()
    return built


def test_the_sdist_holds_the_package_and_its_docs_and_no_tests(tmp_path: Path) -> None:
    sdist = hatchling("sdist", tmp_path)
    assert sdist.name == f"vsphere_preemption-{VERSION}.tar.gz"
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
        pkg_info = Parser().parsestr(tar.extractfile(f"{sdist.name[:-7]}/PKG-INFO").read().decode())  # type: ignore[union-attr]
    tops = {n.split("/")[0] for n in names}
    assert tops == {
        "src", "docs", "README.md", "CHANGELOG.md", "LICENSE", "pyproject.toml", "PKG-INFO",
        ".gitignore",  # hatchling adds it
    }  # fmt: skip
    assert "src/vsphere_preemption/cli/main.py" in names
    assert "docs/operating.md" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert pkg_info["License-Expression"] == "Apache-2.0"
    assert pkg_info["Version"] == VERSION
    assert pkg_info.get_all("License-File") == ["LICENSE"]


def test_the_wheel_carries_the_license_and_the_metadata(tmp_path: Path) -> None:
    wheel = hatchling("wheel", tmp_path)
    with zipfile.ZipFile(wheel) as whl:
        names = whl.namelist()
        dist_info = f"vsphere_preemption-{VERSION}.dist-info"
        meta = Parser().parsestr(whl.read(f"{dist_info}/METADATA").decode())
    assert f"{dist_info}/licenses/LICENSE" in names
    assert not [n for n in names if n.startswith(("tests/", "bench/"))]
    assert meta["License-Expression"] == "Apache-2.0"
    assert meta["License"] is None  # the old free-text field is gone
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL") or [])
    assert urls, "no project URLs"
    assert all(u.startswith("https://") for u in urls.values())
    classifiers = meta.get_all("Classifier") or []
    assert "License :: OSI Approved :: Apache Software License" not in classifiers  # PEP 639
    assert any(c.startswith("Development Status ::") for c in classifiers)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_link_to_a_readme_section_finds_it() -> None:
    """The table of contents (and every other `(#anchor)` link) survives a renamed heading."""
    text = (ROOT / "README.md").read_text()
    prose = re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
    anchors = {slug(h) for h in re.findall(r"^#+ (.+)$", prose, re.MULTILINE)}
    links = set(re.findall(r"\]\(#([^)]+)\)", prose))
    assert links and not links - anchors, sorted(links - anchors)
    assert "[`docs/operating.md`](docs/operating.md)" in text
