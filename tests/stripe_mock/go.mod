// stripe-mock, Stripe's own API mock (request validation against Stripe's OpenAPI description), pinned here:
// `make stripe-mock` builds its main package into .cache/stripe-mock/ and rebuilds only when this pin changes.
module github.com/fluxrate/fluxrate/tests/stripe_mock

go 1.22.1

require github.com/stripe/stripe-mock v0.203.0
