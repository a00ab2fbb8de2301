"""gateway: an authorization and identity sidecar."""

__version__ = "0.1.0"
