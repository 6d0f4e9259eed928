"""fluxrate: Stripe Payment Links for invoices declared as Kubernetes resources."""

API_GROUP = "billing.fluxrate.co"
API_VERSION = "v1alpha1"
WEBHOOK_PATH_PREFIX = "/api/v1/webhooks/stripe"

__version__ = "0.1.0"
