"""OIDC configuration checks (the flow's own tests use the defaults)."""

from __future__ import annotations

import pytest

from app.config import ConfigError, dev_config


def _problems(tmp_path, **oidc) -> list[str]:
    try:
        dev_config(str(tmp_path), overrides={"oidc": {"issuer": "https://idp.example.com", **oidc}})
    except ConfigError as exc:
        return exc.problems
    return []


def test_oidc_settings_are_checked(tmp_path):
    assert _problems(tmp_path, client_id="hs") == []
    assert any("oidc.scope: must include openid" in p for p in _problems(tmp_path, client_id="hs", scope=["email"]))
    assert any("oidc.client_id: must be set" in p for p in _problems(tmp_path))
    both = _problems(tmp_path, client_id="hs", client_secret="x", client_secret_path=str(tmp_path / "s"))
    assert any("set only one of them" in p for p in both)
    assert any("pkce.method" in p for p in _problems(tmp_path, client_id="hs", pkce={"method": "S512"}))


def test_defaults_are_headscales(tmp_path):
    o = dev_config(str(tmp_path), overrides={"oidc": {"issuer": "https://idp.example.com", "client_id": "hs"}}).oidc
    assert list(o.scope) == ["openid", "profile", "email"]
    assert o.only_start_if_oidc_is_available is True and o.email_verified_required is True
    assert o.pkce.enabled is False and o.pkce.method == "S256" and o.use_expiry_from_token is False


@pytest.mark.parametrize("key", ["expiry", "strip_email_domain", "map_legacy_users"])
def test_keys_headscale_removed_are_errors(tmp_path, key):
    value = "30d" if key == "expiry" else True
    assert any(f"oidc.{key}" in p for p in _problems(tmp_path, client_id="hs", **{key: value}))
