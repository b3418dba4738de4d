"""A self-hosted Tailscale control server (headscale-compatible)."""

__version__ = "0.1.0"
