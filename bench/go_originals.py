"""The Go originals, built from their source (a snapshot brought by `fetch`) for the
side-by-side benchmarks: into a temporary directory, never into this repository."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bench.function_load import tool


def build_go(source: Path, out: Path, package: str = ".", name: str = "kn-go-preemption") -> Path:
    """`go build` the main package `package` of the module at `source` into `out`/`name`."""
    binary = out / name
    print(f"$ (cd {source} && go build -o {binary} {package})", file=sys.stderr)
    env = {**os.environ, "GOFLAGS": "-buildvcs=false"}
    subprocess.run(
        [tool("go"), "build", "-o", str(binary), package], cwd=source, env=env, check=True
    )
    return binary
