"""The image, built from the Dockerfile unchanged and run, with Debian's buildah.

No registry is reachable from where the tests run, so the official base
(`python:3.11-slim-bookworm`, which users pull) cannot be had. A stand-in is made instead,
reproducibly from a recipe (BASE_RECIPE): Debian bookworm from deb.debian.org by
`debootstrap --variant=minbase`, Debian's python3.11 (and its venv module) added by apt, the
package caches and documentation removed, committed as a local image. It is what the official
base is where the Dockerfile looks (a `python` on PATH that makes virtualenvs, a Debian
bookworm userland); it is not that image (Python 3.11.2 from Debian, in /usr/bin, rather than
the newest 3.11 built from source in /usr/local). The Dockerfile's PYTHON_BASE argument names
it for the build, the only difference from a user's build.

Both are built once and kept in buildah's storage in the tool cache
($VSPHERE_PREEMPTION_TOOLS, default ~/.cache/vsphere-preemption, under containers/), tagged by
what went into them: the base by its recipe, the image by the base and the files the
Dockerfile copies. The image is built again only when one of those changed.

buildah runs here as root with the vfs storage driver (no overlay mounts in this sandbox)
and chroot isolation (podman cannot start containers: setting rlimits is not permitted).
A container runs as Kubernetes would run it: its root file system mounted read-only in a
mount namespace of its own, /proc and /dev, an empty /tmp where the chart gives one, the
image's environment, entry point and user (uid 65532), and the host's network.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from vsphere_preemption.devtools.devservers import tools_dir

ROOT = Path(__file__).parents[2]

# Everything that decides the stand-in base: a change here makes a new one.
BASE_RECIPE: dict[str, Any] = {
    "recipe": 1,
    "suite": "bookworm",
    "mirror": "http://deb.debian.org/debian",
    "variant": "minbase",
    "packages": ["python3.11", "python3.11-venv", "python-is-python3", "ca-certificates"],
    # What python:3.11-slim leaves out too: package lists and caches, documentation.
    "remove": [
        "var/cache/apt/*", "var/lib/apt/lists/*", "usr/share/doc/*", "usr/share/man/*",
        "usr/share/info/*", "usr/share/locale/*", "var/log/*", "debootstrap",
    ],
    # The official image's configuration that matters to a Dockerfile built on it.
    "env": {
        "LANG": "C.UTF-8",
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    },
    "cmd": ["python3"],
}  # fmt: skip
BASE_NAME = "localhost/vsphere-preemption-test-base"
IMAGE_NAME = "localhost/vsphere-preemption"

# The build context: exactly what the Dockerfile copies (.dockerignore lets only these in).
CONTEXT = (
    "Dockerfile",
    ".dockerignore",
    "pyproject.toml",
    "README.md",
    "LICENSE",
    "requirements",
    "src",
)


class BuildahMissing(RuntimeError):
    """buildah or debootstrap is not installed (scripts/setup installs them)."""


def store() -> Path:
    return tools_dir() / "containers"


def buildah(*args: str, timeout: float = 900) -> str:
    """buildah on the tool cache's own storage; its output, or an error with its stderr."""
    if shutil.which("buildah") is None:
        raise BuildahMissing(
            "buildah is not installed: run scripts/setup (apt-get install buildah)"
        )
    argv = [
        "buildah", "--root", str(store() / "storage"), "--runroot", str(store() / "run"),
        "--storage-driver", "vfs", *args,
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} failed ({done.returncode}): {done.stderr[-3000:]}")
    return done.stdout


def package_version() -> str:
    version: str = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    return version


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def base_tag() -> str:
    return _digest(json.dumps(BASE_RECIPE, sort_keys=True).encode())


def image_tag() -> str:
    """Changes when the base or any file the build reads changes (not with __pycache__)."""
    h = hashlib.sha256(base_tag().encode())
    for name in CONTEXT:
        path = ROOT / name
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in files:
            if "__pycache__" in f.parts or f.suffix == ".pyc":
                continue
            h.update(str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def exists(reference: str) -> bool:
    return bool(buildah("images", "--quiet", "--filter", f"reference={reference}").strip())


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """One builder at a time (two test processes may want the image at once)."""
    store().mkdir(parents=True, exist_ok=True)
    with open(store() / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _run(argv: Sequence[str], timeout: float = 900) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} failed ({done.returncode}): {done.stderr[-3000:]}")


def _make_base(reference: str) -> None:
    if shutil.which("debootstrap") is None:
        raise BuildahMissing("debootstrap is not installed: run scripts/setup")
    recipe = BASE_RECIPE
    with tempfile.TemporaryDirectory(dir=store(), prefix="base-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        _run(["debootstrap", f"--variant={recipe['variant']}", recipe["suite"], str(rootfs),
              recipe["mirror"]])  # fmt: skip
        # apt inside the new root resolves what debootstrap's own resolver cannot (virtual
        # packages such as python3.11-distutils).
        install = "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
        install += "--no-install-recommends " + " ".join(recipe["packages"])
        in_root = 'mount -t proc proc "$1/proc"; chroot "$1" sh -c "$2"'
        _run(["unshare", "--mount", "--fork", "sh", "-ec", in_root, "sh", str(rootfs), install])
        for pattern in recipe["remove"]:
            for path in rootfs.glob(pattern):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
        tarball = Path(tmp) / "rootfs.tar"
        _run(["tar", "--numeric-owner", "-C", str(rootfs), "--exclude=./dev/*",
              "--exclude=./proc/*", "--exclude=./sys/*", "-cf", str(tarball), "."])  # fmt: skip
        container = buildah("from", "scratch").strip()
        try:
            buildah("add", container, str(tarball), "/")
            config = [f"--env={k}={v}" for k, v in recipe["env"].items()]
            label = f"vsphere-preemption.test-base.recipe={json.dumps(recipe, sort_keys=True)}"
            buildah("config", *config, "--cmd", json.dumps(recipe["cmd"]), "--label", label,
                    container)  # fmt: skip
            buildah("commit", "--rm", container, reference)
        except BaseException:
            with contextlib.suppress(RuntimeError):
                buildah("rm", container)
            raise


def _host_pip() -> list[str]:
    """The build's pip reaches the package index as this machine's pip does (a proxy's CA
    bundle, an index in pip's configuration file): those files are mounted into the build's
    RUN steps, read-only, and are in no layer of the image."""
    paths = {"/etc/pip.conf", os.environ.get("PIP_CERT"), os.environ.get("SSL_CERT_FILE")}
    return [
        arg
        for path in sorted(p for p in paths if p and Path(p).is_file())
        for arg in ("--volume", f"{path}:{path}:ro")
    ]


def base_image() -> str:
    """The stand-in base, made if the cache has none of this recipe."""
    reference = f"{BASE_NAME}:{base_tag()}"
    with _locked():
        if not exists(reference):
            _make_base(reference)
    return reference


@dataclass
class Built:
    reference: str
    seconds: float  # 0 when the cache had it


def image() -> Built:
    """The image of the Dockerfile as it is, built if the cache has none of this tag."""
    base = base_image()
    reference = f"{IMAGE_NAME}:{image_tag()}"
    with _locked():
        if exists(reference):
            return Built(reference, 0.0)
        started = time.monotonic()
        # --layers: a change to src/ alone reuses the layer of the installed locks.
        buildah("bud", "--isolation", "chroot", "--layers", "--pull-never", *_host_pip(),
                "--build-arg", f"PYTHON_BASE={base}", "--build-arg", f"VERSION={package_version()}",
                "--tag", reference, "--file", str(ROOT / "Dockerfile"), str(ROOT))  # fmt: skip
        seconds = time.monotonic() - started
        # Older builds of the image go (their layers are the cache's bulk under vfs), but only
        # those built over an hour ago: the cache is shared by every checkout on the machine,
        # and the suite of another worktree may be using its own, newer build right now.
        listed = buildah("images", "--format", "{{.Name}}:{{.Tag}}\t{{.CreatedAtRaw}}")
        for line in listed.splitlines():
            name, _, created = line.partition("\t")
            if name.startswith(f"{IMAGE_NAME}:") and name != reference and _stale(created):
                with contextlib.suppress(RuntimeError):
                    buildah("rmi", name)
        return Built(reference, seconds)


def _stale(created: str) -> bool:
    """Whether an image created at `created` (buildah's `2026-12-07 20:50:32.15 +0000 UTC`)
    is over an hour old; an unreadable time counts as fresh (kept: removing is the risk)."""
    try:
        when = datetime.strptime(created.strip()[:19], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return False
    return datetime.now(UTC) - when > timedelta(hours=1)


def inspect(reference: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(buildah("inspect", "--type", "image", reference))
    return data


def size_bytes(reference: str) -> int:
    """The image's size unpacked: the sum of its layers (what `docker images` shows)."""
    out = buildah("images", "--format", "{{.Size}}", "--filter", f"reference={reference}")
    size = out.strip().splitlines()[0]
    match = re.fullmatch(r"([\d.]+) ?([kKMG]?B)", size)
    assert match, size
    unit = {"B": 1, "kB": 1000, "KB": 1000, "MB": 1000**2, "GB": 1000**3}[match[2]]
    return int(float(match[1]) * unit)


@dataclass
class Container:
    """A container of `reference`, run as Kubernetes runs the chart's pods.

    `argv` replaces the image's command (CMD), as Kubernetes' `args` do, `entrypoint` its
    entry point (`command`). `binds` are host directories mounted read-only at paths the image
    has; `tmp` gives an empty writable /tmp (the chart's emptyDir for the worker).
    """

    reference: str
    log_file: Path
    argv: Sequence[str] | None = None
    entrypoint: Sequence[str] | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    binds: Mapping[str, Path] = field(default_factory=dict)
    tmp: bool = False
    proc: subprocess.Popen[bytes] | None = None
    _container: str = ""

    def command(self) -> tuple[str, list[str], list[str]]:
        """(user, environment, command) from the image's configuration."""
        config = inspect(self.reference)["OCIv1"]["config"]
        entrypoint = config.get("Entrypoint", []) if self.entrypoint is None else self.entrypoint
        command = [*entrypoint, *(config.get("Cmd", []) if self.argv is None else self.argv)]
        env = [*config.get("Env", []), *(f"{k}={v}" for k, v in self.env.items())]
        # What runc and containerd add for a user /etc/passwd does not name (65532 is not in
        # the image's): HOME=/.
        if not any(e.startswith("HOME=") for e in env):
            env.append("HOME=/")
        return config["User"], env, command

    def start(self) -> Container:
        user, env, command = self.command()
        self._container = buildah("from", "--pull-never", self.reference).strip()
        root = buildah("mount", self._container).strip()
        # In a mount namespace of its own: the root read-only, then what the pod would have.
        script = [
            "root=$1; user=$2; shift 2",
            'mount --bind "$root" "$root"',
            'mount -o remount,bind,ro "$root"',
            'mount -t proc proc "$root/proc"',
            'mount --rbind /dev "$root/dev"',
        ]
        if self.tmp:
            script.append('mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$root/tmp"')
        for target, source in self.binds.items():
            script.append(f'mount --bind {shlex.quote(str(source))} "$root"{shlex.quote(target)}')
            script.append(f'mount -o remount,bind,ro "$root"{shlex.quote(target)}')
        script.append('exec chroot --userspec="$user" "$root" /usr/bin/env -i "$@"')
        argv = ["unshare", "--mount", "--propagation", "private", "--fork",
                "sh", "-ec", "\n".join(script), "sh", root, user, *env, *command]  # fmt: skip
        with open(self.log_file, "ab") as out:
            self.proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    def wait(self, timeout: float = 60) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM, as the kubelet sends; the exit code."""
        assert self.proc is not None
        if self.alive():
            # The program only (unshare's child): unshare then exits with the program's code,
            # as a container runtime reports it.
            pid = self.proc.pid
            children = Path(f"/proc/{pid}/task/{pid}/children")
            with contextlib.suppress(OSError):
                for child in children.read_text().split():
                    os.kill(int(child), signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait()

    def remove(self) -> None:
        if self.proc is not None and self.alive():
            self.terminate()
        if self._container:
            with contextlib.suppress(RuntimeError):
                buildah("umount", self._container)
            with contextlib.suppress(RuntimeError):
                buildah("rm", self._container)
            self._container = ""

    def __enter__(self) -> Container:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.remove()


def run(
    reference: str, argv: Sequence[str], log_file: Path, *, entrypoint: Sequence[str] | None = None
) -> tuple[int, str]:
    """A one-off command in a container of the image; (exit code, output)."""
    with Container(reference, log_file, argv=argv, entrypoint=entrypoint) as container:
        code = container.wait(120)
        return code, container.log()
