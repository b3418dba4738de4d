"""README.md's appliance section agrees with the entrypoint's environment table.

After changing the table: `UPDATE_README=1 .venv/bin/pytest tests/entrypoint/test_readme.py`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from entrypoint.env import VARIABLES, markdown_table

README = Path(__file__).resolve().parents[2] / "README.md"
TABLE = re.compile(r"(<!-- env-table:start -->\n)(.*?)(<!-- env-table:end -->)", re.DOTALL)


def appliance_section(text: str) -> str:
    start, end = text.index("<!-- appliance:start -->"), text.index("<!-- appliance:end -->")
    return text[start:end]


def test_environment_table_in_readme_is_generated_from_the_entrypoint():
    text = README.read_text()
    if os.environ.get("UPDATE_README"):
        text = TABLE.sub(lambda m: m.group(1) + markdown_table() + m.group(3), text)
        README.write_text(text)
    match = TABLE.search(appliance_section(text))
    assert match, "README.md lacks the env-table markers inside the appliance section"
    assert match.group(2) == markdown_table(), "stale: UPDATE_README=1 .venv/bin/pytest tests/entrypoint/test_readme.py"
    for var in VARIABLES:
        assert f"| `{var.name}` |" in match.group(2)


def test_readme_covers_the_operator_journey():
    section = appliance_section(README.read_text())
    for needle in ("fly apps create", "fly storage create", "fly secrets set NOISE_PRIVATE_KEY=",
                   "AGE_SECRET_KEY=", "fly deploy --ha=false", "tailscale up --login-server https://",
                   'fly ssh console -C "headscale', "### OIDC", "### Custom domain", "### Metrics",
                   "### Migrating to the appliance", "### Migrating from PostgreSQL", "import-db.sqlite",
                   "uv run main.py --pg-host"):
        assert needle in section, needle
