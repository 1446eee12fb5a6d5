"""Event-driven virtual machine preemption for VMware vSphere."""

from __future__ import annotations


def __getattr__(name: str) -> str:
    # The version is written in one place, pyproject.toml; the installed package's metadata
    # carries it. Read when asked for, not at import: every process (and the workflow
    # sandbox) imports this package, few want the version.
    if name == "__version__":
        from importlib.metadata import version

        return version("vsphere-preemption")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
