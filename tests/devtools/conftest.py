"""The vSphere fixtures (a fresh vcsim, a client, an inventory) serve the inventory writer too."""

from tests.vsphere.conftest import client, inventory, make_client, sim

__all__ = ["client", "inventory", "make_client", "sim"]
