"""DATABASE_URL: the appliance on PostgreSQL (the highly available deployment)."""

from __future__ import annotations

import stat

import pytest
import yaml

from app.config import load_config
from entrypoint.__main__ import prepare_directories, write_secrets
from entrypoint.env import InvalidEnvironment, validate
from entrypoint.layout import Paths
from entrypoint.render import render
from tests.entrypoint.test_env_and_render import NOISE, TOOLS

URL = "postgres://headscale:s3cr:t\\pw@db.internal:5433/headscale?sslmode=require"
HA = {"FLY_APP_NAME": "hs-ha", "NOISE_PRIVATE_KEY": NOISE, "DATABASE_URL": URL}


def test_database_url_replaces_litestream_and_needs_no_bucket(tmp_path):
    settings = validate(HA)
    assert not settings.litestream and settings.postgres["host"] == "db.internal"
    rendered = render(settings, Paths.under("/"), TOOLS)
    config = yaml.safe_load(rendered.config)
    assert config["database"] == {
        "type": "postgres",
        "postgres": {"host": "db.internal", "port": 5433, "name": "headscale", "user": "headscale",
                     "ssl": "require", "max_open_conns": 10, "max_idle_conns": 2, "conn_max_idle_time_secs": 3600}}
    for text in (rendered.config, rendered.litestream, rendered.supervisord):
        assert "s3cr" not in text and URL not in text
    assert "[program:litestream]" not in rendered.supervisord
    path = tmp_path / "config.yaml"
    path.write_text(rendered.config)
    cfg = load_config(str(path), {})  # the server accepts what the entrypoint renders
    assert cfg.database.type == "postgres" and cfg.database.postgres.port == 5433


def test_the_password_goes_to_a_0600_pgpass_in_the_servers_home(tmp_path):
    paths = Paths.under(tmp_path)
    prepare_directories(paths)
    write_secrets(validate(HA), paths)
    pgpass = paths.data_dir / ".pgpass"
    assert pgpass.read_text() == "*:*:*:*:s3cr\\:t\\\\pw\n"
    assert stat.S_IMODE(pgpass.stat().st_mode) == 0o600
    write_secrets(validate({**HA, "DATABASE_URL": "postgres://u@db/hs"}), paths)
    assert not pgpass.exists()


@pytest.mark.parametrize(("extra", "problem"), [
    ({"LITESTREAM_ENABLED": "true"}, "LITESTREAM_ENABLED=true and DATABASE_URL are both set"),
    ({"IMPORT_DATABASE": "true"}, "headscale database copy --to $DATABASE_URL"),
    ({"DATABASE_URL": "mysql://u:p@h/db"}, "DATABASE_URL must start with postgres://"),
    ({"DATABASE_URL": "postgres://db.internal/"}, "DATABASE_URL lacks the name, user"),
])
def test_contradictions_are_reported(extra, problem):
    with pytest.raises(InvalidEnvironment) as err:
        validate({**HA, **extra})
    assert any(problem in p for p in err.value.problems), err.value.problems
    assert not any("s3cr" in p for p in err.value.problems)
