"""The in-process server's protocol tests (registration, map streams and deltas, sessions,
ephemeral collection, expiry, policy delivery) again, on a real PostgreSQL: everything the
server does on SQLite works there too. The functions are the SQLite modules' own; only the
``server`` fixture differs."""

from __future__ import annotations

import pytest

from app.config import dev_config
from app.server.serve import build, start, stop
from tests.server.test_control import *  # the same tests, collected here again
from tests.server.test_policy_delivery import *
from tests.server.test_policy_delivery import tailnet  # noqa: F401 - fixture, uses the server below
from tests.server.test_sessions import *


@pytest.fixture
async def server(tmp_path, postgres):
    name = postgres.create_database("srv", template=postgres.migrated_template())
    cfg = dev_config(str(tmp_path), overrides={
        "listen_addr": "127.0.0.1:0",
        "metrics_listen_addr": "",
        "tuning.batch_change_delay": "20ms",
        "node.ephemeral.inactivity_timeout": "70s",
        "database.type": "postgres",
        "database.postgres.host": "127.0.0.1",
        "database.postgres.port": postgres.port,
        "database.postgres.name": name,
        "database.postgres.user": "postgres",
        "database.postgres.pass": postgres.admin_password,
        "database.postgres.max_open_conns": 4,
        "database.postgres.max_idle_conns": 1,
    })
    services = await build(cfg)
    assert services.state.db.dialect == "postgres"
    await start(services)
    try:
        yield services
    finally:
        await stop(services)
        postgres.drop_database(name)
