"""Configuration: headscale 0.29's config.yaml keys, driven by one settings table.

    from app.config import load_config, dev_config, Config, ConfigError

    cfg = load_config()                      # search path + HEADSCALE_* env
    cfg.server_url, cfg.derp.server.region_id, cfg.dns.nameservers.global_
    cfg.node.ephemeral.inactivity_timeout    # float seconds
    cfg.get("tuning.batch_change_delay"), cfg.as_dict(masked=True), cfg.warnings

Modules: ``settings`` (the table), ``values`` (value types, durations), ``loader``
(file/env/overrides → Config), ``validate`` (cross-key rules), ``model`` (Config),
``docs`` (docs/config.md).
"""

from app.config.loader import dev_config, find_config_file, load_config
from app.config.model import Config, ConfigError, Section
from app.config.settings import SETTINGS, Setting
from app.config.validate import expand_env
from app.config.values import format_duration, parse_duration


def read_oidc_client_secret(cfg: Config, env=None) -> str:
    """The OIDC client secret: ``oidc.client_secret``, or the contents of
    ``oidc.client_secret_path`` ($VARS expanded, surrounding whitespace stripped)."""
    import os

    if cfg.oidc.client_secret:
        return cfg.oidc.client_secret
    if not cfg.oidc.client_secret_path:
        return ""
    path = expand_env(cfg.oidc.client_secret_path, os.environ if env is None else env)
    with open(path, encoding="utf-8") as f:
        return f.read().strip()


__all__ = [
    "SETTINGS",
    "Config",
    "ConfigError",
    "Section",
    "Setting",
    "dev_config",
    "find_config_file",
    "format_duration",
    "load_config",
    "parse_duration",
    "read_oidc_client_secret",
]
