"""The shape of a tag an admin may set (API, console, CLI, pre-auth keys).

Tailscale clients refuse any tag that is not ``tag:`` followed by an ASCII letter and then
letters, digits or dashes (tailcfg.CheckTag), and headscale's admin API further requires
tags to be lowercase. A tag outside this shape could never be advertised by a node nor named
in a policy the clients accept, so it is refused up front with a message saying what a valid
tag looks like.
"""

from __future__ import annotations

import re

PATTERN = r"tag:[a-z][a-z0-9-]*"
_VALID = re.compile(PATTERN)
EXAMPLE = "tag:server, tag:ci-runner-2"
SHAPE = ("'tag:' then a lowercase letter, then lowercase letters, digits or dashes "
         f"(e.g. {EXAMPLE})")


def admin_tag_problem(tag: str) -> str | None:
    """None if ``tag`` is acceptable, else a one-line reason that names the valid shape."""
    if _VALID.fullmatch(tag):
        return None
    shown = tag if len(tag) <= 80 else tag[:77] + "..."
    if not tag.startswith("tag:"):
        why = "it must start with 'tag:'"
    elif len(tag) == 4:
        why = "the name after 'tag:' is empty"
    elif tag != tag.lower():
        why = "tags must be lowercase"
    elif not ("a" <= tag[4] <= "z"):
        why = "the name must start with a letter"
    else:
        why = "only letters, digits and dashes are allowed"
    return f"invalid tag {shown!r}: {why}; a valid tag is {SHAPE}"
