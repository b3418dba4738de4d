"""The favicon and Apple configuration profiles, made here (no binary files in the tree)."""

from __future__ import annotations

import struct
import uuid
import zlib
from xml.sax.saxutils import escape

# Profile payload types per platform (facts from headscale's platform_config.go).
APPLE_PLATFORMS = {
    "ios": "io.tailscale.ipn.ios",
    "macos-app-store": "io.tailscale.ipn.macos",
    "macos-standalone": "io.tailscale.ipn.macsys",
}
PROFILE_IDENTIFIER = "com.github.juanfont.headscale"


def mobileconfig(platform: str, server_url: str) -> str:
    """The .mobileconfig that sets Tailscale's ControlURL to ``server_url`` (XML-escaped)."""
    url = escape(server_url)
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
  <dict>
    <key>PayloadUUID</key>
    <string>{uuid.uuid4()}</string>
    <key>PayloadDisplayName</key>
    <string>Headscale</string>
    <key>PayloadDescription</key>
    <string>Configure Tailscale login server to: {url}</string>
    <key>PayloadIdentifier</key>
    <string>{PROFILE_IDENTIFIER}</string>
    <key>PayloadRemovalDisallowed</key>
    <false/>
    <key>PayloadType</key>
    <string>Configuration</string>
    <key>PayloadVersion</key>
    <integer>1</integer>
    <key>PayloadContent</key>
    <array>
      <dict>
        <key>PayloadType</key>
        <string>{APPLE_PLATFORMS[platform]}</string>
        <key>PayloadUUID</key>
        <string>{uuid.uuid4()}</string>
        <key>PayloadIdentifier</key>
        <string>{PROFILE_IDENTIFIER}</string>
        <key>PayloadVersion</key>
        <integer>1</integer>
        <key>PayloadEnabled</key>
        <true/>
        <key>ControlURL</key>
        <string>{url}</string>
      </dict>
    </array>
  </dict>
</plist>
"""


def _png(width: int, height: int, rows: list[bytes]) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + r for r in rows)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)   # 8-bit RGBA
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def _favicon() -> bytes:
    """32x32: a 3x3 grid of dots (the middle row solid), as Tailscale's mark suggests a mesh."""
    size, on, dim, clear = 32, bytes((59, 91, 219, 255)), bytes((59, 91, 219, 90)), bytes(4)
    rows = []
    for y in range(size):
        row = bytearray()
        for x in range(size):
            px = clear
            for cy in (6, 16, 26):
                for cx in (6, 16, 26):
                    if (x - cx) ** 2 + (y - cy) ** 2 <= 16:
                        px = on if cy == 16 or (cx, cy) == (16, 26) else dim
            row += px
        rows.append(bytes(row))
    return _png(size, size, rows)


FAVICON = _favicon()
