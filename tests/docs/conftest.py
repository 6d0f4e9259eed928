# The operator fixtures (including the secret-leak search after each test) apply to the docs tests too.
from ..operator.conftest import cluster, no_secret_leaks, operator, operator_settings  # noqa: F401
