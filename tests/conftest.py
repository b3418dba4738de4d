"""Session-wide fixtures shared by several test folders."""

from __future__ import annotations

import pytest

from tests.pgcluster import Cluster


@pytest.fixture(scope="session")
def postgres():
    """One real PostgreSQL (Debian's) for the whole session, on a free loopback port."""
    cluster = Cluster()
    cluster.start()
    yield cluster
    cluster.stop()
