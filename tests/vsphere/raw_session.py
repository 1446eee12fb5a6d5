"""A raw pyVmomi session on vcsim of its own, beside the client under test."""

from __future__ import annotations

from typing import Any

from vsphere_preemption.devtools.devservers import Vcsim
from vsphere_preemption.vsphere.sdk import connect


class RawSession:
    """Logged in on construction, logged out by `close()`."""

    def __init__(self, sim: Vcsim) -> None:
        self.si: Any = connect.SmartConnect(
            host="127.0.0.1",
            port=sim.port,
            user=sim.username,
            pwd=sim.password,
            disableSslCertValidation=True,
        )
        self.content: Any = self.si.RetrieveContent()

    def close(self) -> None:
        connect.Disconnect(self.si)
