import pytest

from tests.e2e.harness import netns_available


def pytest_collection_modifyitems(config, items):
    # Real-client tests need root and iproute2 (installed by `make apt`); they are not optional
    # in CI, so a missing prerequisite fails loudly instead of skipping.
    for item in items:
        if "e2e" in str(item.fspath):
            item.add_marker(pytest.mark.realclient)


@pytest.fixture(scope="session", autouse=True)
def _require_netns():
    assert netns_available(), "real-client tests need root and `ip netns` (run `make apt`)"
