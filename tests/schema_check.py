"""Validate manifests against a CRD's openAPIV3Schema and against the pydantic models, naming field paths."""

from __future__ import annotations

from typing import Any

import jsonschema
from pydantic import ValidationError

from fluxrate import crds, models

MODELS = {"Invoice": models.Invoice, "StripeIntegration": models.StripeIntegration}


def _k8s_path(parts: list[Any]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def schema_errors(doc: dict[str, Any]) -> list[str]:
    schema = crds.openapi_schema(doc["kind"])
    validator = jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    messages = []
    for error in validator.iter_errors(doc):
        parts = list(error.absolute_path)
        if error.validator == "required":
            parts.append(error.message.split("'")[1])
        messages.append(f"{_k8s_path(parts)}: {error.message}")
    return messages


def model_errors(doc: dict[str, Any]) -> list[str]:
    try:
        MODELS[doc["kind"]].model_validate(doc)
    except ValidationError as exc:
        return [f"{_k8s_path(list(e['loc']))}: {e['msg']}" for e in exc.errors()]
    return []
