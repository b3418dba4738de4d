"""Rendering the pages a person sees: Jinja2 templates beside this file, autoescaped, one
inline stylesheet allowed by its hash, and a Content-Security-Policy that allows nothing else
(no scripts, no external fonts or images, forms only to this server, no framing)."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup
from quart import Response

HERE = Path(__file__).resolve().parent
SITE = "headscale"
CSS = (HERE / "style.css").read_text(encoding="utf-8").strip()
_CSS_HASH = base64.b64encode(hashlib.sha256(CSS.encode()).digest()).decode()
CSP = ("default-src 'none'; " f"style-src 'sha256-{_CSS_HASH}'; " "img-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

_env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]),
                   undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render_html(template: str, **ctx: Any) -> str:
    ctx.setdefault("site", SITE)
    ctx.setdefault("server_url", "")
    ctx.setdefault("title", SITE)
    # The stylesheet is ours and constant; Markup keeps Jinja from escaping its quotes.
    return _env.get_template(template).render(css=Markup(CSS), **ctx)


def page(template: str, *, status: int = 200, **ctx: Any) -> Response:
    resp = Response(render_html(template, **ctx), status=status, content_type="text/html; charset=utf-8")
    for k, v in HEADERS.items():
        resp.headers[k] = v
    return resp
