# One image for the function and the worker: its entry point is `preemptctl`, and the default
# command serves the function. Run the worker with the argument `worker`:
#
#   docker build -t vsphere-preemption:0.1.0 .
#   docker run --rm -e TEMPORAL_URL=... -p 8080:8080 vsphere-preemption:0.1.0            # function
#   docker run --rm -e TEMPORAL_URL=... -e VCENTER_URL=... vsphere-preemption:0.1.0 worker
#
# Build stage: the package and its runtime dependencies (no dev tools) in a virtualenv, the
# exact versions of the lock (requirements/runtime.txt, hashes required; scripts/lock writes
# it); the wheel is built by the locked build backend (requirements/build.txt) in a venv of
# its own that stays behind.
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
# The base's bundled pip installs only the pinned pip (requirements/bootstrap.txt); that pip
# installs the locks with --no-deps, so no resolver looks past them whatever the index holds
# (scripts/install-lock does the same for .venv).
COPY requirements/bootstrap.txt requirements/runtime.txt requirements/build.txt requirements/
RUN python -m venv /opt/venv \
 && python -m venv /opt/build \
 && /opt/build/bin/pip install --require-hashes --no-deps -r requirements/bootstrap.txt \
 && /opt/venv/bin/pip install --require-hashes --no-deps -r requirements/bootstrap.txt \
 && /opt/build/bin/pip install --require-hashes --no-deps -r requirements/build.txt \
 && /opt/venv/bin/pip install --require-hashes --no-deps -r requirements/runtime.txt \
 && /opt/venv/bin/pip check
COPY pyproject.toml README.md ./
COPY src ./src
# pip writes the .pyc files here, so the read-only runtime never compiles at start.
RUN /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /wheels . \
 && /opt/venv/bin/pip install --no-deps /wheels/*.whl \
 && /opt/venv/bin/python -m compileall -q /opt/venv/lib

# Runtime stage: the same base (the venv's python links to it), the venv, nothing else.
FROM python:3.11-slim
# MALLOC_ARENA_MAX: the Temporal client's threads would each grow a malloc arena; two keep
# the function's resident memory after a burst well lower (see BENCHMARKS.md).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MALLOC_ARENA_MAX=2 \
    PORT=8080 \
    LOG_FORMAT=json
COPY --from=build /opt/venv /opt/venv
# A numeric non-root user (65532, "nonroot"), so Kubernetes' runAsNonRoot can verify it.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["preemptctl"]
CMD ["function"]
