# syntax=docker/dockerfile:1
# One image for both processes: `fluxrate operator` and `fluxrate receiver` (the chart sets the argument).
# Built by `make image`. Runs as a numeric non-root UID and needs no writable path but /tmp, so it works
# with readOnlyRootFilesystem (mount an emptyDir at /tmp, as the Helm chart does).

ARG PYTHON_VERSION=3.11

# --- build: a wheel of fluxrate and wheels of all its runtime dependencies --------------------------------
FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY fluxrate ./fluxrate
RUN python -m pip wheel --wheel-dir /wheels .

# --- runtime: slim Python with only the installed wheels ----------------------------------------------------
FROM python:${PYTHON_VERSION}-slim AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="fluxrate" \
      org.opencontainers.image.description="Kubernetes operator and webhook receiver that make Stripe Payment Links the way customers pay invoices declared as Kubernetes resources" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="fluxrate" \
      org.opencontainers.image.source="https://github.com/fluxrate/fluxrate"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/tmp \
    TMPDIR=/tmp \
    FLUXRATE_CRDS_DIR=/usr/share/fluxrate/crds
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m pip install --no-index --find-links=/wheels fluxrate
# fluxrate.crds looks here when it runs outside a source checkout.
COPY crds/ /usr/share/fluxrate/crds/
# No login shell, no home directory: the processes only write to /tmp.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["fluxrate"]
CMD ["--help"]
