"""The hostile-input tests again on a real PostgreSQL, which refuses some text SQLite takes
(a NUL character): no bad input may reach it as a 500 either."""

from __future__ import annotations

import pytest

from app.config import dev_config
from app.server.serve import build, start, stop
from tests.server.test_hostile_api import api, test_reproducers_get_a_json_400  # noqa: F401 - collected again
from tests.server.test_hostile_control import (  # noqa: F401
    test_bad_hostinfo_is_dropped_and_every_map_still_builds,
    test_text_postgres_cannot_store_is_dropped_not_stored,
)


@pytest.fixture
async def server(tmp_path, postgres):
    name = postgres.create_database("hostile", template=postgres.migrated_template())
    cfg = dev_config(str(tmp_path), overrides={
        "listen_addr": "127.0.0.1:0", "metrics_listen_addr": "", "tuning.batch_change_delay": "20ms",
        "database.type": "postgres", "database.postgres.host": "127.0.0.1",
        "database.postgres.port": postgres.port, "database.postgres.name": name,
        "database.postgres.user": "postgres", "database.postgres.pass": postgres.admin_password,
        "database.postgres.max_open_conns": 4, "database.postgres.max_idle_conns": 1,
    })
    services = await build(cfg)
    await start(services)
    try:
        yield services
    finally:
        await stop(services)
        postgres.drop_database(name)
