"""The adapter's own errors: safe text only.

pyVmomi faults and HTTP errors are turned into these with a message we write
(fault type plus vCenter's short message), raised `from None` so that no third-party
object, and so nothing that could carry a credential, travels into logs or into a
Temporal failure (whose cause chain is stored in workflow history).
"""

from __future__ import annotations

from collections.abc import Iterable


class VSphereError(RuntimeError):
    """A vCenter operation failed; the message is safe to log and to store."""


class ConfigError(VSphereError):
    """The vCenter configuration (URL, secret files, CA bundle) cannot be used."""


class LoginError(VSphereError):
    """vCenter refused the credentials."""


class TLSVerificationError(VSphereError):
    """vCenter's certificate could not be verified."""


class TagNotFoundError(VSphereError):
    """No tag of that name exists."""

    def __init__(self, tag: str) -> None:
        super().__init__(f"tag {tag!r} not found")
        self.tag = tag


class CategoryNotFoundError(VSphereError):
    """No tag category of that name exists."""

    def __init__(self, category: str) -> None:
        super().__init__(f"tag category {category!r} not found")
        self.category = category


class EntityError(VSphereError):
    """The alarmed entity cannot be used as a scope; `entity` is its `type:value`."""

    def __init__(self, message: str, entity: str) -> None:
        super().__init__(message)
        self.entity = entity


class EntityNotFoundError(EntityError):
    """The alarmed entity does not exist (deleted, or a wrong moref)."""

    def __init__(self, entity: str) -> None:
        super().__init__(f"entity {entity} not found", entity)


class UnsupportedEntityError(EntityError):
    """The alarmed entity is of a type that holds no VMs we know how to find."""

    def __init__(self, entity: str, supported: Iterable[str]) -> None:
        super().__init__(
            f"cannot find the VMs under {entity}: entity type not supported "
            f"(supported: {', '.join(sorted(supported))})",
            entity,
        )


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Defence in depth: blank any secret that a server might echo back."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
