"""Event-driven virtual machine preemption for VMware vSphere."""

__version__ = "0.1.0"
