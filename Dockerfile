# One image for the function and the worker: its entry point is `preemptctl`, and the default
# command serves the function. Run the worker with the argument `worker`:
#
#   VERSION="$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml)"
#   docker build --build-arg VERSION="$VERSION" -t vsphere-preemption:"$VERSION" .
#   docker run --rm -e TEMPORAL_URL=... -p 8080:8080 vsphere-preemption:"$VERSION"            # function
#   docker run --rm -e TEMPORAL_URL=... -e VCENTER_URL=... vsphere-preemption:"$VERSION" worker
#
# VERSION is the package's (pyproject.toml's `version`, the one place it is written): it goes
# into the image's OCI label, and the build fails if it is not the version of the wheel built.
#
# The base, pinned by digest so that a rebuild gets the same bytes; an ARG, so that it can be
# moved to a newer patch release (`docker buildx imagetools inspect python:3.11-slim-bookworm`
# prints the current digest) or to a mirror. Named -bookworm, not -slim: python:3.11-slim has
# moved to the next Debian release, and the image is tested on bookworm. This digest is the one
# a public document recorded as checked against Docker Hub; no registry is reachable from
# where this repository's tests run, so check it before a release. The tests build the
# Dockerfile on a stand-in for it (tests/deploy/image.py).
ARG PYTHON_BASE=python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91

# Build stage: the package and its runtime dependencies (no dev tools) in a virtualenv, the
# exact versions of the lock (requirements/runtime.txt, hashes required; scripts/lock writes
# it); the wheel is built by the locked build backend (requirements/build.txt) in a venv of
# its own that stays behind.
FROM ${PYTHON_BASE} AS build
ARG VERSION
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
# The base's bundled pip installs only the pinned pip (requirements/bootstrap.txt); that pip
# installs the locks with --no-deps, so no resolver looks past them whatever the index holds
# (scripts/install-lock does the same for .venv).
COPY requirements/bootstrap.txt requirements/runtime.txt requirements/build.txt requirements/
# binutils' strip, in this stage only: the compiled extensions (the Temporal core, uvloop,
# pydantic-core, ...) ship their symbols and debug information, tens of MB the runtime never reads.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends binutils \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv \
 && python -m venv /opt/build \
 && /opt/build/bin/pip install --require-hashes --no-deps -r requirements/bootstrap.txt \
 && /opt/venv/bin/pip install --require-hashes --no-deps -r requirements/bootstrap.txt \
 && /opt/build/bin/pip install --require-hashes --no-deps -r requirements/build.txt \
 && /opt/venv/bin/pip install --require-hashes --no-deps -r requirements/runtime.txt \
 && /opt/venv/bin/pip check \
 && find /opt/venv -name '*.so' -exec strip --strip-unneeded {} +
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
# pip writes the .pyc files here, so the read-only runtime never compiles at start. Then pip
# and setuptools leave the venv: the runtime installs nothing, and what is not there cannot be
# used against it (nor be a scanner's finding).
RUN /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /wheels . \
 && /opt/venv/bin/pip install --no-deps /wheels/*.whl \
 && /opt/venv/bin/python -m compileall -q /opt/venv/lib \
 && /opt/venv/bin/python -m pip uninstall --yes --quiet pip setuptools
# The label below says VERSION: it must be what was built.
RUN built="$(/opt/venv/bin/python -c 'from importlib.metadata import version; print(version("vsphere-preemption"))')" \
 && if [ "$VERSION" != "$built" ]; then \
      echo "--build-arg VERSION=$VERSION: the package is $built (pyproject.toml's version)" >&2; exit 1; \
    fi

# Runtime stage: the same base (the venv's python links to it), the venv, nothing else.
FROM ${PYTHON_BASE}
ARG PYTHON_BASE
ARG VERSION
# The OCI annotations a registry and a scanner read; the version is the package's (checked
# above).
LABEL org.opencontainers.image.title="vsphere-preemption" \
      org.opencontainers.image.description="Event-driven VM preemption for VMware vSphere: CloudEvents function, Temporal worker and preemptctl" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${PYTHON_BASE}"
# The base's own pip, setuptools and wheel go too (python:3.11-slim installs them; Debian's
# python3.11 has none, hence the test): nothing in the runtime installs packages.
RUN if python -m pip --version >/dev/null 2>&1; then \
      python -m pip uninstall --yes --quiet pip setuptools wheel; \
    fi
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
