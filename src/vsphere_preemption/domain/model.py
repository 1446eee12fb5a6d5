"""Value types shared by every layer."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Criticality(StrEnum):
    """How urgently capacity is needed; decides soft (LOW) or hard power-off."""

    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"

    @property
    def forces_power_off(self) -> bool:
        # The Go worker's rule: anything but LOW is a hard power-off.
        return self is not Criticality.LOW


@dataclass(frozen=True, order=True)
class VmRef:
    """A managed object reference, as vSphere names objects (`VirtualMachine`, `vm-58`)."""

    value: str
    type: str = "VirtualMachine"

    def __str__(self) -> str:
        return f"{self.type}:{self.value}"
