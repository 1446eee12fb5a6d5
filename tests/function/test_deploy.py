"""The deployment files name what the function reads and serves (checked as text: no YAML
library is a dependency of the project)."""

from __future__ import annotations

import re
from pathlib import Path

from vsphere_preemption.domain.events import TANZU_SOURCES_TYPE
from vsphere_preemption.settings import FunctionSettings

ROOT = Path(__file__).parents[2]


def test_the_function_service_sets_every_required_setting() -> None:
    text = (ROOT / "deploy" / "function.yaml").read_text()
    env = set(re.findall(r"- name: ([A-Z_]+)", text))
    aliases = set(FunctionSettings.variables())
    # All settings but those the platform injects (PORT by Knative, K_SINK by the SinkBinding).
    assert env == aliases - {"PORT", "K_SINK"}
    assert "path: /health/readiness" in text and "path: /health/liveness" in text
    assert f"type: {TANZU_SOURCES_TYPE}" in text
    assert text.count("workflow: vsphere-preemption") >= 1
    assert 'autoscaling.knative.dev/minScale: "1"' in text
    assert 'autoscaling.knative.dev/maxScale: "1"' in text


def test_the_sinkbinding_selects_the_function_by_its_label() -> None:
    text = (ROOT / "deploy" / "sinkbinding.yaml").read_text()
    assert "kind: SinkBinding" in text
    assert re.search(r"matchLabels:\s+workflow: vsphere-preemption", text)
    assert re.search(r"kind: Broker\s+name: default", text)


def test_the_image_runs_preemptctl_as_non_root() -> None:
    text = (ROOT / "Dockerfile").read_text()
    # Both stages on the one base, pinned by digest in an ARG (the runtime's venv links to it).
    assert re.search(r"^ARG PYTHON_BASE=python:3\.11-slim\S*@sha256:[0-9a-f]{64}$", text, re.M)
    assert text.count("FROM ${PYTHON_BASE}") == 2
    assert 'ENTRYPOINT ["preemptctl"]' in text and 'CMD ["function"]' in text
    assert re.search(r"^USER 65532", text, re.MULTILINE)
