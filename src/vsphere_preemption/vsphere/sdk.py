"""pyVmomi, imported in one place and typed as `Any`.

pyVmomi's stubs leave its constructors and methods untyped, so mypy strict would
reject every call; the adapter checks what it reads from vCenter itself instead.
"""

from __future__ import annotations

from typing import Any

from pyVim import connect as _connect
from pyVmomi import vim as _vim
from pyVmomi import vmodl as _vmodl

vim: Any = _vim
vmodl: Any = _vmodl
connect: Any = _connect
