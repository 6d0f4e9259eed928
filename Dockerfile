# Minimal image; hardened multi-stage build arrives with the packaging work.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY fluxrate ./fluxrate
COPY crds /usr/share/fluxrate/crds
RUN pip install --no-cache-dir . && useradd --uid 10001 --no-create-home fluxrate
USER 10001
ENTRYPOINT ["fluxrate"]
