"""A self-hosted Tailscale control server (headscale-compatible)."""

__version__ = "0.1.0"
# The headscale release whose REST API (shapes and behaviour) this server implements; `GET /version`
# reports it as `version`, because admin tools compare that number to choose their code paths.
HEADSCALE_API_VERSION = "v0.29.2"
