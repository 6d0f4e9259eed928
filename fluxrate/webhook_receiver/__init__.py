"""The Stripe webhook receiver: verifies deliveries and records payments on Invoices.

Public entry points: ``fluxrate.webhook_receiver.settings.ReceiverSettings`` and
``fluxrate.webhook_receiver.runner.running_receiver`` (imported lazily to keep ``fluxrate --help`` fast).
"""
