"""The chaos and hostile-input suite: real operator and receiver processes on the sandbox, faults injected
through the sandbox's knobs and OS signals, outcomes counted. ``python -m fluxrate_sandbox.chaos`` (``make chaos``)."""
