"""jinja2 (StrictUndefined) over config-templates/; returns strings, the caller writes files."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path, PurePath

import jinja2

from entrypoint.env import VARIABLES, Settings, check_bool
from entrypoint.layout import REPLICA_PATH, Paths, Tools

TEMPLATE_DIRS = (
    Path(__file__).resolve().parent.parent / "config-templates",  # source tree / editable install
    Path("/usr/share/headscale/config-templates"),  # the image
)


@dataclass(frozen=True)
class Rendered:
    config: str
    litestream: str
    supervisord: str

    def files(self, paths: Paths) -> dict[Path, str]:
        return {
            paths.config: self.config,
            paths.litestream_config: self.litestream,
            paths.supervisord_config: self.supervisord,
        }


def _yaml(value: object) -> str:
    """A YAML scalar or flow sequence; JSON is valid YAML, so json.dumps quotes safely."""
    if isinstance(value, PurePath):
        value = str(value)
    if isinstance(value, tuple):
        value = list(value)
    return json.dumps(value, ensure_ascii=False)


def _ini(value: object) -> str:
    """A value for supervisord's ini file (which expands %(name)s)."""
    return str(value).replace("%", "%%")


def _command(argv: object) -> str:
    assert isinstance(argv, (list, tuple))
    return shlex.join(str(a) for a in argv).replace("%", "%%")


def environment() -> jinja2.Environment:
    directory = next((d for d in TEMPLATE_DIRS if d.is_dir()), TEMPLATE_DIRS[0])
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(directory)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters.update(yaml=_yaml, ini=_ini, command=_command)
    return env


def context(settings: Settings, paths: Paths, tools: Tools) -> dict[str, object]:
    return {
        "env": dict(settings.values),
        "flags": {v.name: settings.flag(v.name) for v in VARIABLES if v.check is check_bool},
        "lists": {v.name: settings.list(v.name) for v in VARIABLES},
        "server_url": settings.server_url,
        "oidc": settings.oidc,
        "litestream": settings.litestream,
        "postgres": {k: v for k, v in (settings.postgres or {}).items() if k != "password"},
        "age_recipient": settings.age_recipient or "",
        "replica_path": REPLICA_PATH,
        "paths": paths,
        "tools": {"python": tools.python, "server": list(tools.server), "litestream": tools.litestream},
    }


def render(settings: Settings, paths: Paths, tools: Tools) -> Rendered:
    env = environment()
    ctx = context(settings, paths, tools)
    return Rendered(
        config=env.get_template("config.yaml.j2").render(ctx),
        litestream=env.get_template("litestream.yml.j2").render(ctx),
        supervisord=env.get_template("supervisord.conf.j2").render(ctx),
    )


def mask(text: str, secrets: list[str]) -> str:
    """Replace every secret value in `text` by a fixed mask (for ENTRYPOINT_DEBUG output)."""
    for secret in sorted({s.strip() for s in secrets if s.strip()}, key=len, reverse=True):
        text = text.replace(secret, "********")
    return text
