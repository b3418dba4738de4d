"""QR codes as inline SVG, drawn here (segno, pure Python): no image service, no script."""

from __future__ import annotations

import io

import segno


def qr_svg(text: str, title: str = "QR code of the command") -> str:
    """An <svg> element (attributes only, no style) encoding ``text``; scan it with a phone."""
    buf = io.BytesIO()
    segno.make(text, error="m").save(buf, kind="svg", scale=4, border=4, xmldecl=False, svgns=True,
                                     title=title, dark="#000", light="#fff", nl=False,
                                     svgclass="qr", lineclass=None)
    return buf.getvalue().decode("ascii")
