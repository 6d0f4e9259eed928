"""Locate and load the CustomResourceDefinitions shipped in ``crds/``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from fluxrate import API_GROUP, API_VERSION

CRD_FILES = ("billing.fluxrate.co_stripeintegrations.yaml", "billing.fluxrate.co_invoices.yaml")


def crds_dir() -> Path:
    """``$FLUXRATE_CRDS_DIR``, else ``crds/`` of a source checkout, else the copy installed in the image."""
    candidates = [
        os.environ.get("FLUXRATE_CRDS_DIR"),
        Path(__file__).resolve().parent.parent / "crds",
        Path("/usr/share/fluxrate/crds"),
    ]
    for candidate in candidates:
        if candidate and (Path(candidate) / CRD_FILES[0]).is_file():
            return Path(candidate)
    raise FileNotFoundError(
        "fluxrate CRDs not found: set FLUXRATE_CRDS_DIR to the folder holding " + ", ".join(CRD_FILES)
    )


def load_crds() -> list[dict[str, Any]]:
    folder = crds_dir()
    return [yaml.safe_load((folder / name).read_text()) for name in CRD_FILES]


def crd_for_kind(kind: str) -> dict[str, Any]:
    for crd in load_crds():
        if crd["spec"]["names"]["kind"] == kind:
            return crd
    raise KeyError(f"no CRD for kind {kind!r} in group {API_GROUP}")


def served_version(crd: dict[str, Any], version: str = API_VERSION) -> dict[str, Any]:
    for entry in crd["spec"]["versions"]:
        if entry["name"] == version:
            return entry
    raise KeyError(f"{crd['metadata']['name']} does not serve {version}")


def openapi_schema(kind: str) -> dict[str, Any]:
    return served_version(crd_for_kind(kind))["schema"]["openAPIV3Schema"]
