"""Render the chart with the helm that scripts/setup builds into the tool cache."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.schemas import ROOT, setup_version
from vsphere_preemption.devtools.devservers import tools_dir

CHART = ROOT / "deploy" / "helm" / "vsphere-preemption"
KUBE = "1.33.0"  # what `helm template` assumes; the objects are validated at several versions


def helm() -> Path:
    path = tools_dir() / "bin" / "helm"
    stamp = tools_dir() / "bin" / "helm.version"
    want = setup_version("HELM_VERSION")
    if not path.exists() or not stamp.exists() or stamp.read_text().strip() != want:
        raise AssertionError(f"no helm {want} at {path}: run scripts/setup")
    return path


def run_helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(helm()), *args], capture_output=True, text=True, check=False, timeout=60
    )


def render_text(*args: str, release: str = "vsphere-preemption") -> str:
    proc = run_helm("template", release, str(CHART), "--kube-version", KUBE, *args)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def render(*args: str, release: str = "vsphere-preemption") -> list[dict[str, Any]]:
    return [o for o in yaml.safe_load_all(render_text(*args, release=release)) if o]


def one(objects: list[dict[str, Any]], kind: str, api_version: str | None = None) -> Any:
    found = [
        o
        for o in objects
        if o["kind"] == kind and (api_version is None or o["apiVersion"] == api_version)
    ]
    assert len(found) == 1, f"{len(found)} {kind} objects"
    return found[0]


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", [])}
