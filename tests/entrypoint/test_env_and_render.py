"""The environment table: validation (every problem at once) and rendering against expected files.

Regenerate the expected files after an intended template change with
`UPDATE_EXPECTED=1 .venv/bin/pytest tests/entrypoint/test_env_and_render.py` and review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from entrypoint import env as envtable
from entrypoint.env import InvalidEnvironment, validate
from entrypoint.layout import Paths, Tools
from entrypoint.render import mask, render

EXPECTED = Path(__file__).resolve().parent / "expected"
# A throwaway age identity used only by these tests.
AGE_KEY = "AGE-SECRET-KEY-1KCVSVJ3HTADK4J2QXHLSUPVJWV42EU7C4W40GXC9DJVS7THLV2QQD8DMKU"
AGE_RECIPIENT = "age1wevuejcnr389h943c6ukess8lgstvnx2xghrh5t8fuuwcl6p7pnq5xsdch"
NOISE = "privkey:" + "0123456789abcdef" * 4
TOOLS = Tools(python="/usr/local/bin/python", server=("/usr/local/bin/headscale",),
              litestream="/usr/local/bin/litestream", supervisord="/usr/local/bin/supervisord")

FLY = {
    "FLY_APP_NAME": "my-headscale",
    "NOISE_PRIVATE_KEY": NOISE,
    "AGE_SECRET_KEY": AGE_KEY,
    "AWS_ACCESS_KEY_ID": "tid_example",
    "AWS_SECRET_ACCESS_KEY": "tsec_example",
    "AWS_REGION": "auto",
    "AWS_ENDPOINT_URL_S3": "https://fly.storage.tigris.dev",
    "BUCKET_NAME": "my-headscale-bucket",
}

CASES = {
    "fly-defaults": FLY,
    "custom-domain-oidc": {
        **FLY,
        "HEADSCALE_DOMAIN_NAME": "vpn.example.com",
        "HEADSCALE_DNS_BASE_DOMAIN": "ts.example.net",
        "HEADSCALE_DNS_NAMESERVERS_GLOBAL": "[ 9.9.9.9, https://dns.nextdns.io/abc123 ]",
        "HEADSCALE_DNS_SEARCH_DOMAINS": "corp.example.com lab.example.com",
        "HEADSCALE_PREFIXES_V6": "",
        "HEADSCALE_PREFIXES_ALLOCATION": "sequential",
        "HEADSCALE_LOG_LEVEL": "debug",
        "HEADSCALE_OIDC_ISSUER": "https://accounts.google.com",
        "HEADSCALE_OIDC_CLIENT_ID": "1234.apps.googleusercontent.com",
        "HEADSCALE_OIDC_CLIENT_SECRET": "GOCSPX-secret",
        "HEADSCALE_OIDC_ALLOWED_DOMAINS": "example.com",
        "HEADSCALE_OIDC_ALLOWED_USERS": "ignored@example.com",
        "HEADSCALE_OIDC_ALLOWED_USERS_FLY": "alice@example.com, bob@example.com",
        "HEADSCALE_OIDC_EXPIRY": "90d",
        "HEADSCALE_OIDC_PKCE_ENABLED": "true",
        "LITESTREAM_SYNC_INTERVAL": "5s",
        "LITESTREAM_VALIDATION_INTERVAL": "0",
    },
    "no-litestream-embedded-derp": {
        "FLY_APP_NAME": "hs-lab",
        "NOISE_PRIVATE_KEY": NOISE,
        "LITESTREAM_ENABLED": "false",
        "HEADSCALE_DERP_URLS": "",
        "HEADSCALE_DERP_SERVER_ENABLED": "true",
        "HEADSCALE_DNS_MAGIC_DNS": "false",
    },
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_rendered_files_match_expected(case):
    settings = validate(CASES[case])
    rendered = render(settings, Paths.under("/"), TOOLS)
    produced = {"config.yaml": rendered.config, "litestream.yml": rendered.litestream,
                "supervisord.conf": rendered.supervisord}
    directory = EXPECTED / case
    if os.environ.get("UPDATE_EXPECTED"):
        directory.mkdir(parents=True, exist_ok=True)
        for name, text in produced.items():
            (directory / name).write_text(text)
    for name, text in produced.items():
        assert text == (directory / name).read_text(), f"{case}/{name}"
    config = yaml.safe_load(rendered.config)
    assert config["noise"]["private_key_path"] == "/var/lib/headscale/noise_private.key"
    assert config["database"]["sqlite"]["path"] == "/var/lib/headscale/db.sqlite"
    dbs = yaml.safe_load(rendered.litestream)["dbs"]
    if settings.litestream:
        assert dbs[0]["replicas"][0]["age"]["recipients"] == [AGE_RECIPIENT]
        assert dbs[0]["replicas"][0]["age"]["identities"] == ["${AGE_SECRET_KEY}"]
    else:
        assert dbs == [] and "[program:litestream]" not in rendered.supervisord
    for secret in settings.secrets:
        for text in produced.values():
            assert secret not in text


def test_defaults_follow_the_fly_app_name():
    settings = validate(FLY)
    assert settings.server_url == "https://my-headscale.fly.dev"
    assert settings.litestream and not settings.import_database and not settings.oidc
    assert settings.age_recipient == AGE_RECIPIENT
    assert settings.list("HEADSCALE_DNS_NAMESERVERS_GLOBAL") == [
        "1.1.1.1", "1.0.0.1", "2606:4700:4700::1111", "2606:4700:4700::1001"]


def test_domain_name_is_the_later_spelling_of_the_server_url():
    assert validate({**FLY, "HEADSCALE_DOMAIN_NAME": "vpn.example.com"}).server_url == "https://vpn.example.com"
    same = {**FLY, "HEADSCALE_DOMAIN_NAME": "vpn.example.com", "HEADSCALE_SERVER_URL": "https://vpn.example.com/"}
    assert validate(same).server_url == "https://vpn.example.com"
    with pytest.raises(InvalidEnvironment) as err:
        validate({**FLY, "HEADSCALE_DOMAIN_NAME": "vpn.example.com", "HEADSCALE_SERVER_URL": "https://x.example"})
    assert err.value.problems == ["HEADSCALE_SERVER_URL and HEADSCALE_DOMAIN_NAME disagree: set only one of them"]
    with pytest.raises(InvalidEnvironment) as err:
        validate({**FLY, "HEADSCALE_DOMAIN_NAME": "https://vpn.example.com"})
    assert err.value.problems[0].startswith("HEADSCALE_DOMAIN_NAME must be a bare host name")


def test_every_problem_is_reported_once_per_line_and_no_secret_is_echoed():
    bad = {
        "NOISE_PRIVATE_KEY": "privkey:XYZ-secret",
        "AGE_SECRET_KEY": "AGE-SECRET-KEY-1NOTAKEY-secret",
        "HEADSCALE_PREFIXES_V4": "fd7a:115c:a1e0::/48",
        "HEADSCALE_PREFIXES_ALLOCATION": "linear",
        "HEADSCALE_EPHEMERAL_NODE_INACTIVITY_TIMEOUT": "30s",
        "HEADSCALE_LOG_LEVEL": "verbose",
        "HEADSCALE_DNS_MAGIC_DNS": "maybe",
        "LITESTREAM_RETENTION": "1 day",
        "HEADSCALE_OIDC_ISSUER": "https://idp.example.com",
    }
    with pytest.raises(InvalidEnvironment) as err:
        validate(bad)
    problems = err.value.problems
    names = [p.split()[0] for p in problems]
    assert names == [
        "FLY_APP_NAME", "NOISE_PRIVATE_KEY", "AGE_SECRET_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
        "AWS_REGION", "AWS_ENDPOINT_URL_S3", "BUCKET_NAME", "HEADSCALE_LOG_LEVEL", "HEADSCALE_DNS_MAGIC_DNS",
        "HEADSCALE_PREFIXES_V4", "HEADSCALE_PREFIXES_ALLOCATION", "HEADSCALE_EPHEMERAL_NODE_INACTIVITY_TIMEOUT",
        "HEADSCALE_OIDC_CLIENT_ID", "HEADSCALE_OIDC_CLIENT_SECRET", "LITESTREAM_RETENTION",
    ]
    assert all("\n" not in p for p in problems)
    assert not any("XYZ-secret" in p or "NOTAKEY" in p for p in problems)


def test_base_domain_must_not_contain_the_server_host():
    with pytest.raises(InvalidEnvironment) as err:
        validate({**FLY, "HEADSCALE_DNS_BASE_DOMAIN": "fly.dev"})
    assert "must not contain the server's host name" in err.value.problems[0]


def test_litestream_off_needs_no_bucket_but_import_does():
    base = {"FLY_APP_NAME": "a", "NOISE_PRIVATE_KEY": NOISE, "LITESTREAM_ENABLED": "false"}
    assert not validate(base).litestream
    with pytest.raises(InvalidEnvironment) as err:
        validate({**base, "IMPORT_DATABASE": "true"})
    assert {p.split()[0] for p in err.value.problems} == {
        "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_ENDPOINT_URL_S3", "BUCKET_NAME"}


def test_unknown_variables_with_our_prefixes_are_flagged():
    assert envtable.unknown_variables({"HEADSCALE_DNS_BASEDOMAIN": "x", "HOME": "/", "LITESTREAM_ENABLED": "1"}) == [
        "HEADSCALE_DNS_BASEDOMAIN"]


def test_mask_hides_secrets():
    assert mask("a privkey:abc b", ["privkey:abc", ""]) == "a ******** b"


def test_durations():
    assert envtable.duration_seconds("1h30m") == 5400
    assert envtable.duration_seconds("180d") == 180 * 86400
    assert envtable.check_go_duration("180d") is not None
    assert envtable.check_expiry("180d") is None


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_server_accepts_every_rendered_config(case, tmp_path):
    """The control server's own loader validates the rendered file, with the clean environment
    supervisord gives it (`env -i`: the appliance's HEADSCALE_* names are not its overrides)."""
    from app.config import load_config

    paths = Paths.under(tmp_path)
    settings = validate(CASES[case])
    rendered = render(settings, paths, TOOLS)
    paths.config_dir.mkdir(parents=True)
    paths.data_dir.mkdir(parents=True)
    paths.oidc_secret.write_text("secret\n")
    paths.config.write_text(rendered.config)
    cfg = load_config(str(paths.config), env={})
    assert cfg.server_url == settings.server_url
    assert str(cfg.database.sqlite.path) == str(paths.db)
