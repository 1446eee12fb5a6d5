"""The image, built from the Dockerfile unchanged (tests/deploy/image.py: buildah, on a Debian
bookworm stand-in for the official base) and run as the chart runs it: uid 65532, a read-only
root. The function answers its readiness probe and an alarm event by starting the workflow;
the worker, from the same image, connects to the real Temporal dev server and powers off the
tagged VMs on vcsim.

The first build takes minutes (the base from Debian's mirror, then the locks from the package
index); it is cached in the tool cache and made again only when the Dockerfile, the locks,
pyproject.toml, README.md, LICENSE or src/ change.
"""

from __future__ import annotations

import json
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client

from tests.deploy import image
from tests.function.conftest import alarm_event, as_binary
from tests.temporal.helpers import eventually, unique
from tests.temporal.rig import TAG, client_for, powered_off, prepare, vcsim_args, write_secret
from vsphere_preemption.devtools.devservers import TemporalDevServer, Vcsim, free_port
from vsphere_preemption.devtools.inventory import Inventory
from vsphere_preemption.domain.model import VmRef

# The build, cold, takes minutes: more than the suite's per-test timeout.
pytestmark = pytest.mark.timeout(1200)

NONROOT = "65532:65532"


@pytest.fixture(scope="module")
def built() -> image.Built:
    if shutil.which("buildah") is None or shutil.which("debootstrap") is None:
        pytest.fail("buildah and debootstrap are needed: run scripts/setup")
    built = image.image()
    # How long the build took (0 when cached), for the report and for whoever wonders.
    print(f"image {built.reference}: built in {built.seconds:.0f} s, "
          f"{image.size_bytes(built.reference) / 1e6:.0f} MB")  # fmt: skip
    return built


def config(built: image.Built) -> dict[str, object]:
    conf: dict[str, object] = image.inspect(built.reference)["OCIv1"]["config"]
    return conf


def test_the_image_runs_preemptctl_as_a_numeric_non_root_user(built: image.Built) -> None:
    conf = config(built)
    assert conf["User"] == NONROOT
    assert conf["Entrypoint"] == ["preemptctl"] and conf["Cmd"] == ["function"]
    assert "8080/tcp" in conf["ExposedPorts"]  # type: ignore[operator]


def test_the_labels_say_what_it_is_and_its_version_is_the_packages(built: image.Built) -> None:
    labels = config(built)["Labels"]
    assert isinstance(labels, dict)
    assert labels["org.opencontainers.image.version"] == image.package_version()
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert labels["org.opencontainers.image.title"] == "vsphere-preemption"
    assert labels["org.opencontainers.image.base.name"].startswith(image.BASE_NAME)


def test_preemptctl_version_in_the_image(built: image.Built, tmp_path: Path) -> None:
    code, out = image.run(built.reference, ["--version"], tmp_path / "version.log")
    assert (code, out) == (0, f"preemptctl {image.package_version()}\n")


def test_no_pip_or_setuptools_and_the_root_is_read_only(built: image.Built, tmp_path: Path) -> None:
    probe = (
        "import importlib.util, os, sys\n"
        "print(sorted(m for m in ('pip', 'setuptools', 'wheel') if importlib.util.find_spec(m)))\n"
        "print(os.getuid(), os.getgid())\n"
        "try:\n    open('/opt/venv/x', 'w')\nexcept OSError as e:\n    print(e.strerror)\n"
    )
    for python in ("python", "/opt/venv/bin/python"):  # the base's and the venv's
        code, out = image.run(built.reference, ["-c", probe], tmp_path / "probe.log",
                              entrypoint=[python])  # fmt: skip
        assert code == 0, out
        assert out.splitlines() == ["[]", "65532 65532", "Read-only file system"], python
        (tmp_path / "probe.log").unlink()


def test_the_image_is_not_much_more_than_its_base(built: image.Built) -> None:
    """The venv (the locks and the package) over the base: the base here is a stand-in, so
    the whole image's size on the official base is about the official base's plus this."""
    base = image.size_bytes(image.base_image())
    whole = image.size_bytes(built.reference)
    print(
        f"base {base / 1e6:.0f} MB, image {whole / 1e6:.0f} MB, added {(whole - base) / 1e6:.0f} MB"
    )
    assert whole - base < 120e6


async def test_the_function_and_the_worker_from_the_image_power_off_the_tagged_vms(
    built: image.Built,
    temporal_server: TemporalDevServer,
    temporal_client: Client,
    vcsim_factory: Callable[..., Vcsim],
    tmp_path: Path,
) -> None:
    sim = vcsim_factory(*vcsim_args())
    vcenter = client_for(sim)
    scene = prepare(Inventory(vcenter), on=3, off=1)
    queue, alarm = unique("image"), unique("image-alarm")
    secret = write_secret(tmp_path / "vsphere", sim)
    port = free_port()
    function = image.Container(
        built.reference, tmp_path / "function.log",
        env={"TEMPORAL_URL": temporal_server.address, "TEMPORAL_NAMESPACE": "vsphere-preemption",
             "TEMPORAL_TASKQUEUE": queue, "VSPHERE_ALARM_NAME": alarm, "PORT": str(port),
             "WORKFLOW_ID_MODE": "alarm", "VSPHERE_PREEMPTION_TAG": TAG},
    )  # fmt: skip
    worker = image.Container(
        built.reference, tmp_path / "worker.log", argv=["worker"], tmp=True,
        # The credentials as Kubernetes mounts a Secret: files, read-only, at a path of the image.
        binds={"/mnt": secret},
        env={"TEMPORAL_URL": temporal_server.address, "TEMPORAL_NAMESPACE": "vsphere-preemption",
             "TEMPORAL_TASKQUEUE": queue, "VCENTER_URL": sim.url, "VCENTER_INSECURE": "true",
             "VCENTER_SECRET_PATH": "/mnt", "PREEMPTION_SCOPE": "vcenter",
             "PREEMPTION_NOTICE_LOW": "0", "PREEMPTION_NOTICE_MEDIUM": "0"},
    )  # fmt: skip
    with function, worker:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:

            async def readiness() -> int:
                assert function.alive(), function.log()
                assert worker.alive(), worker.log()
                try:
                    return (await http.get("/health/readiness")).status_code
                except httpx.TransportError:
                    return 0

            await eventually(readiness, lambda s: s == 200, timeout=60, what="readiness")
            headers, body = as_binary(alarm_event(alarm, "green", "red"))
            answer = await http.post("/", headers=headers, content=body)
            assert answer.status_code == 200, answer.text
            assert answer.json()["decision"] == "preempt"
            handle = temporal_client.get_workflow_handle(alarm)

            async def off() -> set[VmRef]:
                assert worker.alive(), worker.log()
                return powered_off(vcenter, scene.on)

            await eventually(off, lambda s: s == set(scene.on), timeout=120, what="VMs off")
            await handle.terminate("test over")
        # SIGTERM, as the kubelet stops a pod: both stop gracefully (uvicorn re-raises the
        # signal after its shutdown, so that the parent sees why the function ended).
        assert worker.terminate() == 0, worker.log()
        assert function.terminate() == -signal.SIGTERM, function.log()
        for container in (function, worker):
            assert "Traceback" not in container.log(), container.log()

    assert powered_off(vcenter, scene.all_vms) == set(scene.on) | set(scene.off)
    vcenter.close()
    # JSON lines from both, as LOG_FORMAT=json (the image's default) makes them.
    for container in (function, worker):
        first = container.log().splitlines()[0]
        assert json.loads(first)["level"] in {"info", "warning"}, first


def test_a_rebuild_with_nothing_changed_is_the_cache(built: image.Built) -> None:
    started = time.monotonic()
    again = image.image()
    assert again.reference == built.reference and again.seconds == 0
    assert time.monotonic() - started < 10
