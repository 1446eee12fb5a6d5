"""What crosses Temporal's converter keeps evaluated annotations (domain/model.py says why)."""

from __future__ import annotations

import dataclasses
import inspect
from types import ModuleType

import pytest
from temporalio.converter import DataConverter

from vsphere_preemption.domain import model
from vsphere_preemption.domain.model import PowerOffOutcome, VmMark, VmRef
from vsphere_preemption.temporal import contracts


def dataclasses_of(module: ModuleType) -> list[type]:
    return [
        cls
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if dataclasses.is_dataclass(cls) and cls.__module__ == module.__name__
    ]


@pytest.mark.parametrize("module", [model, contracts], ids=lambda m: m.__name__)
def test_the_payload_types_have_evaluated_annotations(module: ModuleType) -> None:
    found = dataclasses_of(module)
    assert found
    strings = {
        f"{cls.__name__}.{name}"
        for cls in found
        for name, hint in inspect.get_annotations(cls).items()
        if isinstance(hint, str)
    }
    assert not strings, f"string annotations (from __future__ import annotations?): {strings}"


def test_an_outcome_decodes_to_what_was_encoded() -> None:
    refs = [VmRef(f"vm-{i}") for i in range(10)]
    marks = [VmMark(r, "1", "host-1", "resgroup-1", "poweredOff") for r in refs]
    outcome = PowerOffOutcome(powered_off=refs, marks=marks)
    converter = DataConverter.default.payload_converter
    payloads = converter.to_payloads([outcome])
    assert converter.from_payloads(payloads, [PowerOffOutcome]) == [outcome]
