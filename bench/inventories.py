"""Large vcsim inventories for the benchmarks: built once, saved, and loaded from a cache.

Why building is slow: vcsim makes its model VM by VM, and for each VM it waits on two
tasks (CreateVM, then PowerOn) through the PropertyCollector's WaitForUpdatesEx, which
answers on a 20 ms ticker "to allow for updates to accumulate" (govmomi v0.46.3,
simulator/model.go `addMachine`, simulator/property_collector.go). So a VM costs ~40 ms
of waiting, one after the other: measured here, 20 s for 500 VMs, 40 s for 1,000, 79 s for
2,000 (CPU 7 s of the 40), so at least ~7 min for 10,000 on an idle machine, and
14-19 min were seen on a busy one. Tagging is not the cause: the tags are attached with
one `attach-tag-to-multiple-objects` call per tag (vsphere/rest.py).

What this module does instead: the first time a shape is asked for, vcsim builds it once,
`govc object.save` writes every managed object to a directory in a cache outside the
repository (`~/.cache/vsphere-preemption/bench-inventories/<vcsim version>_<shape>/`, or
under $VSPHERE_PREEMPTION_BENCH_INVENTORIES), and every run then serves it with
`vcsim -load DIR`, which puts the objects in place without tasks (1,000 VMs: saved in 5 s,
loaded in 1.4 s). A loaded inventory keeps its managed object IDs. Tags are not saved
(the tagging service keeps them apart): the benchmarks attach theirs after the load.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from vsphere_preemption.devtools.devservers import ToolMissing, Vcsim, tools_dir

COMPLETE = "complete"  # marker file: the save finished


@dataclass(frozen=True)
class Served:
    """A vcsim serving a cached inventory, and what it cost to get there."""

    sim: Vcsim
    directory: Path
    built_s: float | None  # vcsim's own build; None when the cache had the inventory
    saved_s: float | None  # govc object.save; None when the cache had the inventory
    loaded_s: float  # vcsim -load, start to serving


def cache_root() -> Path:
    default = tools_dir() / "bench-inventories"
    return Path(os.environ.get("VSPHERE_PREEMPTION_BENCH_INVENTORIES", default))


def vcsim_version() -> str:
    stamp = tools_dir() / "bin" / "vcsim.version"
    return stamp.read_text().strip() if stamp.exists() else "unknown"


def key_of(flags: Sequence[str]) -> str:
    """A directory name for a shape: `v0.46.3_cluster10_host4_standalone-host0_vm1000`."""
    words = [w.lstrip("-") for w in flags]
    shape = "_".join(a + b for a, b in zip(words[::2], words[1::2], strict=True))
    return re.sub(r"[^A-Za-z0-9._-]", "-", f"{vcsim_version()}_{shape}")


def govc(url: str, *args: str, timeout: float = 1800) -> str:
    """Run govc from the tool cache against `url` (a GOVC_URL, credentials included)."""
    binary = tools_dir() / "bin" / "govc"
    if not binary.exists():
        raise ToolMissing(f"govc is not installed in {binary.parent}: run scripts/setup")
    env = {**os.environ, "GOVC_URL": url, "GOVC_INSECURE": "1"}
    done = subprocess.run(
        [str(binary), *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"govc {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def govc_url(sim: Vcsim) -> str:
    return sim.url.replace("https://", f"https://{sim.username}:{sim.password}@", 1)


def build(flags: Sequence[str], directory: Path) -> tuple[float, float]:
    """Build the shape with vcsim and save it into `directory`; (build s, save s)."""
    partial = directory.with_name(f"{directory.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    started = time.monotonic()
    with Vcsim(args=list(flags), startup_timeout=4 * 3600) as sim:
        built = time.monotonic() - started
        print(f"vcsim {' '.join(flags)}: built in {built:.0f} s", flush=True)
        started = time.monotonic()
        govc(govc_url(sim), "object.save", "-d", str(partial))
        saved = time.monotonic() - started
    (partial / COMPLETE).write_text(f"{' '.join(flags)}\n")
    shutil.rmtree(directory, ignore_errors=True)
    partial.rename(directory)
    print(f"saved to {directory} in {saved:.0f} s", flush=True)
    return built, saved


@contextlib.contextmanager
def served(flags: Sequence[str], *, rebuild: bool = False) -> Iterator[Served]:
    """A vcsim serving the inventory of `flags`, from the cache (built first if missing)."""
    directory = cache_root() / key_of(flags)
    built = saved = None
    if rebuild or not (directory / COMPLETE).exists():
        directory.parent.mkdir(parents=True, exist_ok=True)
        built, saved = build(flags, directory)
    started = time.monotonic()
    with Vcsim(args=["-load", str(directory)], startup_timeout=1800) as sim:
        loaded = time.monotonic() - started
        print(f"vcsim -load {directory}: serving in {loaded:.1f} s", flush=True)
        yield Served(sim, directory, built, saved, loaded)
