"""A short crash campaign (tests/crash_campaign.py; the long one is `make soak`): ~100
acknowledged mutations (API, CLI, registrations, map updates, policy sets) with four
`kill -9`s; after each, the database is intact and holds every acknowledged write, and
registered nodes are served again without re-authentication."""

from __future__ import annotations

import pytest

from tests.crash_campaign import Campaign


@pytest.mark.timeout(120)
async def test_kill_9_during_writes_loses_nothing_acknowledged(tmp_path):
    campaign = Campaign(str(tmp_path), mutations=100, kills=4, seed=20261130)
    try:
        result = await campaign.run()
    finally:
        campaign.srv.stop()
    assert result["kills"] == 4 and result["verifications"] == 5
    assert result["acknowledged"] >= 100
    assert result["reconnects"] >= 3
    assert {"api_user", "api_preauthkey", "api_policy", "registration", "map_update"} <= set(result["by_kind"])
    # The checks can fail: a write that was never made is reported as lost.
    campaign.ledger.users.add("never-created")
    with pytest.raises(AssertionError, match="never-created"):
        campaign.verify()
