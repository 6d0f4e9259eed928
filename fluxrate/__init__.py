"""fluxrate: Stripe Payment Links for invoices declared as Kubernetes resources."""

API_GROUP = "billing.fluxrate.co"
API_VERSION = "v1alpha1"
WEBHOOK_PATH_PREFIX = "/api/v1/webhooks/stripe"


def webhook_url(base_url: str, namespace: str, integration: str) -> str:
    """Where Stripe delivers an integration's webhooks: the receiver's route under ``base_url``."""
    return f"{base_url.rstrip('/')}{WEBHOOK_PATH_PREFIX}/{namespace}/{integration}"

__version__ = "0.1.0"
