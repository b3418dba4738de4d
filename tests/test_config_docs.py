"""docs/config.md is generated from the settings table and must not drift from it."""

from pathlib import Path

from app.config.docs import render_markdown
from app.config.settings import SETTINGS

DOC = Path(__file__).resolve().parent.parent / "docs" / "config.md"


def test_docs_config_md_matches_the_settings_table():
    assert DOC.read_text() == render_markdown(), (
        "docs/config.md is stale: run `python -m app.config docs docs/config.md`"
    )


def test_every_setting_is_documented():
    text = DOC.read_text()
    assert [s.name for s in SETTINGS if f"`{s.name}`" not in text] == []
    assert all(s.help for s in SETTINGS if s.removed is None)
