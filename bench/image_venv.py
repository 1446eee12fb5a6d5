"""A virtualenv built as the image builds /opt/venv, to measure ours as it runs there.

    .venv/bin/python -m bench.image_venv DIR [--source CHECKOUT]   # then DIR/bin/python -m ...

The Dockerfile's steps, on this machine: `python -m venv`, the locked pip
(requirements/bootstrap.txt), the runtime lock (requirements/runtime.txt, hash-checked,
no dependencies resolved), the package itself as a wheel (not editable), every module compiled
to bytecode (`compileall`), then pip and setuptools removed. What differs from the checkout's
`.venv` (scripts/setup), and shows in the figures: the dev tools are absent (pytest's `rich`
and `pygments`, which structlog's console renderer imports when they are there), no
`distutils-precedence.pth` from setuptools hooks every import, and the bytecode is there. The
last matters most for the worker: with PYTHONDONTWRITEBYTECODE set (the image sets it, so may
a developer) a checkout has no `.pyc` of its own modules, and the workflow sandbox, which
imports the workflow module afresh for every new workflow, then compiles its source each time.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def build(target: Path, python: str = sys.executable, source: Path = ROOT) -> Path:
    """Build the image's venv at `target` (replaced if there) with the package of the checkout
    at `source` (this one, or another version's, to compare); its interpreter's path."""
    shutil.rmtree(target, ignore_errors=True)
    base = subprocess.run(
        [python, "-c", "import sys; print(sys._base_executable)"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    subprocess.run([base, "-m", "venv", str(target)], check=True)
    venv_python = target / "bin" / "python"
    pip = [str(venv_python), "-m", "pip", "--disable-pip-version-check", "--quiet"]
    locked = ["install", "--require-hashes", "--no-deps", "-r"]
    subprocess.run([*pip, *locked, str(source / "requirements" / "bootstrap.txt")], check=True)
    subprocess.run([*pip, *locked, str(source / "requirements" / "runtime.txt")], check=True)
    with tempfile.TemporaryDirectory(prefix="image-venv-wheel-") as wheels:
        # Built by the checkout's interpreter, which has the build backend (the dev lock).
        subprocess.run(
            [python, "-m", "pip", "--disable-pip-version-check", "--quiet", "wheel",
             "--no-deps", "--no-build-isolation", "--wheel-dir", wheels, str(source)],
            check=True,
        )  # fmt: skip
        subprocess.run([*pip, "install", "--no-deps", *map(str, Path(wheels).glob("*.whl"))],
                       check=True)  # fmt: skip
    subprocess.run([str(venv_python), "-m", "compileall", "-q", str(target / "lib")],
                   check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    subprocess.run([*pip, "uninstall", "--yes", "pip", "setuptools"], check=True)
    return venv_python


def compile_package(python: str) -> str:
    """Compile the package `python` imports (a checkout's `src/`, say) to bytecode, as the
    image's `compileall` does; its directory."""
    where = subprocess.run(
        [python, "-c", "import os, vsphere_preemption as p; print(os.path.dirname(p.__file__))"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    subprocess.run([python, "-m", "compileall", "-q", where], check=True, stdout=subprocess.DEVNULL)
    return where


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("target", type=Path, help="where to build it (replaced)")
    parser.add_argument("--python", default=sys.executable, help="the checkout's interpreter")
    parser.add_argument("--source", type=Path, default=ROOT, help="the checkout to install")
    args = parser.parse_args(argv)
    print(build(args.target.resolve(), args.python, args.source.resolve()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
