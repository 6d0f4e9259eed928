"""Validate manifests the way the API server does (the sandbox's schema validator) and with the pydantic models."""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import ValidationError

from fluxrate import crds, models
from fluxrate_sandbox.kube_schema import SchemaValidator, field_path

MODELS = {"Invoice": models.Invoice, "StripeIntegration": models.StripeIntegration}


@cache
def _validator(kind: str) -> SchemaValidator:
    return SchemaValidator(crds.openapi_schema(kind))


def schema_errors(doc: dict[str, Any]) -> list[str]:
    return [cause.render() for cause in _validator(doc["kind"]).validate(doc)]


def model_errors(doc: dict[str, Any]) -> list[str]:
    try:
        MODELS[doc["kind"]].model_validate(doc)
    except ValidationError as exc:
        return [f"{field_path(e['loc'])}: {e['msg']}" for e in exc.errors()]
    return []
