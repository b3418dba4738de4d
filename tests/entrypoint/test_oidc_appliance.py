"""The appliance's HEADSCALE_OIDC_* variables: each one reaches the server's configuration as the
server reads it, the client secret only through a 0600 file named by oidc.client_secret_path."""

from __future__ import annotations

import yaml

from app.config import load_config, read_oidc_client_secret
from entrypoint import env as envtable
from entrypoint.env import validate
from entrypoint.layout import Paths
from entrypoint.render import render
from tests.entrypoint.test_env_and_render import FLY, TOOLS

OIDC = {
    "HEADSCALE_OIDC_ISSUER": "https://idp.example.com/realms/main",
    "HEADSCALE_OIDC_CLIENT_ID": "headscale",
    "HEADSCALE_OIDC_CLIENT_SECRET": "oidc-client-secret-value",
    "HEADSCALE_OIDC_SCOPES": "openid, profile, email, groups",
    "HEADSCALE_OIDC_ALLOWED_DOMAINS": "example.com, example.org",
    "HEADSCALE_OIDC_ALLOWED_GROUPS": "/admins, staff",
    "HEADSCALE_OIDC_ALLOWED_USERS": "alice@example.com",
    "HEADSCALE_OIDC_EXPIRY": "30d",
    "HEADSCALE_OIDC_USE_EXPIRY_FROM_TOKEN": "true",
    "HEADSCALE_OIDC_ONLY_START_IF_OIDC_IS_AVAILABLE": "false",
    "HEADSCALE_OIDC_EMAIL_VERIFIED_REQUIRED": "false",
    "HEADSCALE_OIDC_PKCE_ENABLED": "true",
    "HEADSCALE_OIDC_PKCE_METHOD": "plain",
}


def test_every_oidc_variable_reaches_the_server_config(tmp_path):
    table = {v.name for v in envtable.VARIABLES if v.name.startswith("HEADSCALE_OIDC_")}
    assert table - set(OIDC) == {"HEADSCALE_OIDC_ALLOWED_USERS_FLY"}     # tested below
    paths = Paths.under(tmp_path)
    settings = validate({**FLY, **OIDC})
    rendered = render(settings, paths, TOOLS)
    assert "oidc-client-secret-value" not in rendered.config
    paths.config_dir.mkdir(parents=True)
    paths.data_dir.mkdir(parents=True)
    paths.oidc_secret.write_text("oidc-client-secret-value\n")
    paths.oidc_secret.chmod(0o600)
    paths.config.write_text(rendered.config)
    cfg = load_config(str(paths.config), env={})
    o = cfg.oidc
    assert o.issuer == "https://idp.example.com/realms/main" and o.client_id == "headscale"
    assert o.client_secret == "" and o.client_secret_path == str(paths.oidc_secret)
    assert read_oidc_client_secret(cfg, env={}) == "oidc-client-secret-value"
    assert list(o.scope) == ["openid", "profile", "email", "groups"]
    assert list(o.allowed_domains) == ["example.com", "example.org"]
    assert list(o.allowed_groups) == ["/admins", "staff"]
    assert list(o.allowed_users) == ["alice@example.com"]
    assert float(cfg.node.expiry) == 30 * 86400
    assert o.use_expiry_from_token is True and o.only_start_if_oidc_is_available is False
    assert o.email_verified_required is False
    assert o.pkce.enabled is True and o.pkce.method == "plain"
    fly = validate({**FLY, **OIDC, "HEADSCALE_OIDC_ALLOWED_USERS_FLY": "bob@example.com, carol@example.com"})
    assert yaml.safe_load(render(fly, paths, TOOLS).config)["oidc"]["allowed_users"] == [
        "bob@example.com", "carol@example.com"]


def test_without_issuer_there_is_no_oidc_section_and_no_expiry():
    config = yaml.safe_load(render(validate(FLY), Paths.under("/"), TOOLS).config)
    assert "oidc" not in config and config["node"]["expiry"] == "0"


def test_the_retired_strip_email_domain_variable_is_explained():
    environ = {**FLY, "HEADSCALE_OIDC_STRIP_EMAIL_DOMAIN": "true"}
    assert "HEADSCALE_OIDC_STRIP_EMAIL_DOMAIN" not in envtable.unknown_variables(environ)
    (line,) = envtable.retired_variables(environ)
    assert "no longer used" in line and "preferred_username" in line
