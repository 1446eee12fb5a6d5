"""A vcsim inventory with usage figures, boot times and a nested pool, for tests that need them.

vcsim's own inventories (govmomi's `simulator` model) have VMs with no CPU or memory use
and hosts with fixed figures. This builds one that has them, once per test session, the
way a person would: start vcsim with a shape, add a pool nested in a pool
with two VMs in it (`govc pool.create`, `govc vm.create`), save every managed object
(`govc object.save -d DIR`), stop vcsim, and write figures into the saved XML. Each test
then serves DIR with its own `vcsim -load DIR` (`usage_vcsim`), so tests that tag, power
off or annotate never see each other's changes. Managed object IDs survive the load, so
the manifest (`UsageInventory`) names VMs and hosts by moref, with the figures written.

Shape (VM names are vcsim's, so a test can tell where a VM is from its name alone):
- DC0_C0, DC0_C1: clusters of 2 hosts; each has pool DC0_Cn_RP1 (3 VMs) and vApp
  DC0_Cn_APP0 (3 VMs) under its root pool;
- DC0_C0_RP1/Nested: a pool in a pool, with DC0_C0_RP1_Nested_VM0 and _VM1 (host chosen by vcsim);
- DC0_H0: a standalone host with 3 VMs;
- 17 VMs, every one powered on, in folder DC0/vm but for the three DC0_C1_RP1_VMn,
  moved into folder DC0/vm/Batch.

Figures written (VM index i = position in moref order, from 0):
- VMs: overallCpuUsage 100 + 10 i MHz, guestMemoryUsage 200 + 20 i MB, hostMemoryUsage
  300 + 30 i MB, summary.runtime.bootTime 2024-01-01 00:00 + i hours; except
  `no_stats` (no figure at all), `host_memory_only` (no guestMemoryUsage) and
  `runtime_boot` (runtime.bootTime set too, to 2023-06-01 + i hours: vCenter's own
  field, read before the summary's). No figure can be 0: vcsim serializes a 0 as unset
  (Go `omitempty`), so a written 0 reads back as None;
- hosts: overallCpuUsage 1000 + 100 j MHz, overallMemoryUsage 2000 + 100 j MB (j = host
  index in moref order).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from vsphere_preemption.devtools.devservers import ToolMissing, Vcsim, tools_dir
from vsphere_preemption.domain.selection import moref_key

SHAPE = ("-cluster", "2", "-host", "2", "-vm", "3", "-pool", "1", "-app", "1")
NESTED_POOL = "/DC0/host/DC0_C0/Resources/DC0_C0_RP1/Nested"
NESTED_VMS = ("DC0_C0_RP1_Nested_VM0", "DC0_C0_RP1_Nested_VM1")
BATCH_FOLDER = "/DC0/vm/Batch"
BATCH_VMS = ("DC0_C1_RP1_VM0", "DC0_C1_RP1_VM1", "DC0_C1_RP1_VM2")
BOOT_BASE = datetime(2024, 1, 1, tzinfo=UTC)
RUNTIME_BOOT_BASE = datetime(2023, 6, 1, tzinfo=UTC)


@dataclass(frozen=True)
class VmFigures:
    name: str
    cpu_mhz: int | None
    guest_memory_mb: int | None
    host_memory_mb: int | None
    boot_time: datetime  # summary.runtime.bootTime
    runtime_boot_time: datetime | None = None  # runtime.bootTime, where written


@dataclass(frozen=True)
class HostFigures:
    name: str
    cpu_mhz: int
    memory_mb: int


@dataclass(frozen=True)
class UsageInventory:
    """The saved, edited inventory: serve `directory` with `vcsim -load`."""

    directory: Path
    vms: dict[str, VmFigures]  # by moref value
    hosts: dict[str, HostFigures]  # by moref value
    no_stats: str
    host_memory_only: str
    runtime_boot: str

    def vm(self, name: str) -> str:
        """The moref value of the VM called `name`."""
        return next(ref for ref, figures in self.vms.items() if figures.name == name)

    def serve(self) -> Vcsim:
        """A vcsim of its own serving this inventory, started; stop it when done."""
        return Vcsim(args=("-load", str(self.directory))).start()


def govc_binary() -> Path:
    candidate = tools_dir() / "bin" / "govc"
    if not candidate.exists():
        raise ToolMissing(f"govc is not installed in {candidate.parent}: run scripts/setup")
    return candidate


def govc(sim: Vcsim, *args: str) -> str:
    url = sim.url.replace("https://", f"https://{sim.username}:{sim.password}@", 1)
    env = {**os.environ, "GOVC_URL": url, "GOVC_INSECURE": "1"}
    done = subprocess.run(
        [str(govc_binary()), *args], env=env, capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0:
        raise RuntimeError(f"govc {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def save(sim: Vcsim, directory: Path) -> None:
    govc(sim, "object.save", "-d", str(directory))


# -- editing the saved XML -------------------------------------------------------------
# vcsim reads the files with Go's encoding/xml, which does not mind the order of child
# elements, so values are inserted next to a known neighbour.


def _files(directory: Path, kind: str) -> dict[str, Path]:
    """moref value -> file, for one managed object type (`VirtualMachine`, `HostSystem`)."""
    pattern = re.compile(rf"^\d+-{kind}-(.+)\.xml$")
    return {m.group(1): p for p in directory.iterdir() if (m := pattern.match(p.name))}


def _prop_set(text: str, name: str) -> tuple[int, int]:
    """Start and end offsets of the `<propSet>` whose `<name>` is `name`."""
    start = text.index(f"<propSet>\n    <name>{name}</name>")
    return start, text.index("</propSet>", start)


def _edit_prop(text: str, name: str, edit: Callable[[str], str]) -> str:
    start, end = _prop_set(text, name)
    return text[:start] + edit(text[start:end]) + text[end:]


def _name(text: str) -> str:
    start, end = _prop_set(text, "name")
    found = re.search(r"<val[^>]*>([^<]*)</val>", text[start:end])
    assert found, "a saved object without a name"
    return found.group(1)


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def edit_vm(path: Path, figures: VmFigures) -> None:
    """Write a VM's quick stats and boot times into its saved file."""
    stats = "".join(
        f"<{tag}>{value}</{tag}>"
        for tag, value in (
            ("overallCpuUsage", figures.cpu_mhz),
            ("guestMemoryUsage", figures.guest_memory_mb),
            ("hostMemoryUsage", figures.host_memory_mb),
        )
        if value is not None
    )
    text = path.read_text()

    def summary(block: str) -> str:
        block = block.replace("<quickStats>", f"<quickStats>{stats}", 1)
        return re.sub(
            r"<bootTime>[^<]*</bootTime>", f"<bootTime>{_iso(figures.boot_time)}</bootTime>", block
        )

    text = _edit_prop(text, "summary", summary)
    if figures.runtime_boot_time is not None:
        boot = f"<bootTime>{_iso(figures.runtime_boot_time)}</bootTime>"
        text = _edit_prop(
            text,
            "runtime",
            lambda b: b.replace("<numMksConnections>", f"{boot}<numMksConnections>"),
        )
    path.write_text(text)


def edit_host(path: Path, figures: HostFigures) -> None:
    """Replace a host's quick stats (vcsim's fixed 67 MHz / 1404 MB) in its saved file."""

    def summary(block: str) -> str:
        block = re.sub(
            r"<overallCpuUsage>\d+</overallCpuUsage>",
            f"<overallCpuUsage>{figures.cpu_mhz}</overallCpuUsage>",
            block,
        )
        return re.sub(
            r"<overallMemoryUsage>\d+</overallMemoryUsage>",
            f"<overallMemoryUsage>{figures.memory_mb}</overallMemoryUsage>",
            block,
        )

    path.write_text(_edit_prop(path.read_text(), "summary", summary))


def build(directory: Path) -> UsageInventory:
    """Make the inventory in `directory` (which must not exist) and return its manifest."""
    with Vcsim(args=SHAPE) as sim:
        govc(sim, "pool.create", NESTED_POOL)
        for name in NESTED_VMS:
            # No -host: with one, govc places the VM in the host's root pool instead.
            govc(sim, "vm.create", "-on=true", "-net", "VM Network", "-pool", NESTED_POOL, name)
        govc(sim, "folder.create", BATCH_FOLDER)
        govc(sim, "object.mv", *(f"/DC0/vm/{name}" for name in BATCH_VMS), BATCH_FOLDER)
        save(sim, directory)
    vm_files = _files(directory, "VirtualMachine")
    refs = sorted(vm_files, key=moref_key)
    names = {ref: _name(vm_files[ref].read_text()) for ref in refs}
    no_stats, host_memory_only, runtime_boot = refs[1], refs[2], refs[3]
    vms: dict[str, VmFigures] = {}
    for i, ref in enumerate(refs):
        figures = VmFigures(
            name=names[ref],
            cpu_mhz=None if ref == no_stats else 100 + 10 * i,
            guest_memory_mb=None if ref in (no_stats, host_memory_only) else 200 + 20 * i,
            host_memory_mb=None if ref == no_stats else 300 + 30 * i,
            boot_time=BOOT_BASE + timedelta(hours=i),
            runtime_boot_time=RUNTIME_BOOT_BASE + timedelta(hours=i)
            if ref == runtime_boot
            else None,
        )
        edit_vm(vm_files[ref], figures)
        vms[ref] = figures
    hosts: dict[str, HostFigures] = {}
    host_files = _files(directory, "HostSystem")
    for j, ref in enumerate(sorted(host_files, key=moref_key)):
        host = HostFigures(_name(host_files[ref].read_text()), 1000 + 100 * j, 2000 + 100 * j)
        edit_host(host_files[ref], host)
        hosts[ref] = host
    return UsageInventory(directory, vms, hosts, no_stats, host_memory_only, runtime_boot)


# -- fixtures (imported by tests/conftest.py, so every test package can use them) ----------


@pytest.fixture(scope="session")
def usage_inventory(tmp_path_factory: pytest.TempPathFactory) -> UsageInventory:
    """The saved and edited inventory, built once per session (a few seconds)."""
    return build(tmp_path_factory.mktemp("usage-inventory") / "objects")


@pytest.fixture
def usage_vcsim(usage_inventory: UsageInventory) -> Iterator[Vcsim]:
    """A fresh vcsim serving the usage inventory, for this test alone."""
    sim = usage_inventory.serve()
    try:
        yield sim
    finally:
        sim.stop()
