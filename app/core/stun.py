"""STUN binding server as pure functions (RFC 5389, PROTOCOL.md 6.5).

Message header (20 bytes)::

    2B  type: 0x0001 Binding Request, 0x0101 Binding Success Response
    2B  length of the attributes that follow (a multiple of 4)
    4B  magic cookie 0x2112A442
    12B transaction id

Attribute: ``2B type | 2B length | value, zero-padded to a multiple of 4``.

Tailscale's request is 40 bytes: header + SOFTWARE (0x8022, "tailnode") + FINGERPRINT (0x8028,
CRC-32 of everything before it XOR 0x5354554E). We are more lenient than Tailscale's server:
SOFTWARE and FINGERPRINT are optional, but lengths must add up exactly and a FINGERPRINT, if
present, must be the last attribute and correct. Anything else yields ``None``: drop it,
never answer (a STUN server must not be an amplifier).

Our response is the smallest one clients accept: the header plus one XOR-MAPPED-ADDRESS
(``0x00 | family 1/2 | port ^ 0x2112 | address ^ (cookie || txid)``), 32 bytes for IPv4 and
44 for IPv6.
"""

from __future__ import annotations

import ipaddress
import struct
import zlib

BINDING_REQUEST = 0x0001
BINDING_SUCCESS = 0x0101
MAGIC_COOKIE = 0x2112A442
HEADER_LEN = 20
ATTR_MAPPED_ADDRESS = 0x0001
ATTR_XOR_MAPPED_ADDRESS = 0x0020
ATTR_XOR_MAPPED_ADDRESS_ALT = 0x8020  # non-standard, seen from some servers; clients accept it
ATTR_SOFTWARE = 0x8022
ATTR_FINGERPRINT = 0x8028
FINGERPRINT_XOR = 0x5354554E
TAILSCALE_SOFTWARE = b"tailnode"
FAMILY_IPV4 = 0x01
FAMILY_IPV6 = 0x02

_HEADER = struct.Struct(">HHI12s")
_ATTR = struct.Struct(">HH")
_COOKIE = MAGIC_COOKIE.to_bytes(4, "big")


def fingerprint(data: bytes) -> int:
    return zlib.crc32(data) ^ FINGERPRINT_XOR


def _attributes(data: bytes) -> list[tuple[int, int, bytes]] | None:
    """(offset, type, value) of each attribute after the header; None if lengths do not add up."""
    out = []
    off = HEADER_LEN
    end = len(data)
    while off < end:
        if end - off < 4:
            return None
        atype, alen = _ATTR.unpack_from(data, off)
        padded = (alen + 3) & ~3
        if off + 4 + padded > end:
            return None
        out.append((off, atype, data[off + 4 : off + 4 + alen]))
        off += 4 + padded
    return out


def parse_binding_request(data: bytes) -> bytes | None:
    """The 12-byte transaction id of a well-formed Binding Request, else None."""
    if len(data) < HEADER_LEN:
        return None
    mtype, length, cookie, txid = _HEADER.unpack_from(data)
    if mtype != BINDING_REQUEST or cookie != MAGIC_COOKIE:
        return None
    if length % 4 or HEADER_LEN + length != len(data):
        return None
    attrs = _attributes(data)
    if attrs is None:
        return None
    for i, (off, atype, value) in enumerate(attrs):
        if atype == ATTR_FINGERPRINT:
            if i != len(attrs) - 1 or len(value) != 4:
                return None
            if int.from_bytes(value, "big") != fingerprint(data[:off]):
                return None
    return txid


def binding_response(
    txid: bytes, ip: str | ipaddress.IPv4Address | ipaddress.IPv6Address, port: int
) -> bytes:
    """Binding Success with XOR-MAPPED-ADDRESS of the (unmapped) source address."""
    if len(txid) != 12:
        raise ValueError("a STUN transaction id has 12 bytes")
    addr = ipaddress.ip_address(ip.split("%", 1)[0] if isinstance(ip, str) else ip)
    if addr.version == 6 and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped  # a v4 client on a dual-stack socket is a v4 client
    raw = addr.packed
    family = FAMILY_IPV4 if addr.version == 4 else FAMILY_IPV6
    mask = _COOKIE + txid
    xaddr = bytes(a ^ b for a, b in zip(raw, mask))
    value = struct.pack(">BBH", 0, family, port ^ (MAGIC_COOKIE >> 16)) + xaddr
    attr = _ATTR.pack(ATTR_XOR_MAPPED_ADDRESS, len(value)) + value
    return _HEADER.pack(BINDING_SUCCESS, len(attr), MAGIC_COOKIE, txid) + attr


def handle_datagram(data: bytes, ip: str, port: int) -> bytes | None:
    """What to send back to ``ip:port`` for ``data``, or None to drop it."""
    txid = parse_binding_request(data)
    if txid is None:
        return None
    try:
        return binding_response(txid, ip, port)
    except ValueError:
        return None


# --- the client side, for tests and probes --------------------------------------------------


def binding_request(
    txid: bytes, software: bytes | None = TAILSCALE_SOFTWARE, with_fingerprint: bool = True
) -> bytes:
    """A Binding Request as Tailscale builds it (SOFTWARE "tailnode" + FINGERPRINT by default)."""
    if len(txid) != 12:
        raise ValueError("a STUN transaction id has 12 bytes")
    attrs = b""
    if software is not None:
        attrs += _ATTR.pack(ATTR_SOFTWARE, len(software)) + software + bytes(-len(software) % 4)
    length = len(attrs) + (8 if with_fingerprint else 0)
    msg = _HEADER.pack(BINDING_REQUEST, length, MAGIC_COOKIE, txid) + attrs
    if with_fingerprint:
        msg += _ATTR.pack(ATTR_FINGERPRINT, 4) + fingerprint(msg).to_bytes(4, "big")
    return msg


def parse_binding_response(data: bytes) -> tuple[bytes, str, int] | None:
    """(txid, ip, port) from a Binding Success; XOR-MAPPED-ADDRESS wins over MAPPED-ADDRESS."""
    if len(data) < HEADER_LEN:
        return None
    mtype, length, cookie, txid = _HEADER.unpack_from(data)
    if mtype != BINDING_SUCCESS or cookie != MAGIC_COOKIE or HEADER_LEN + length > len(data):
        return None
    attrs = _attributes(data[: HEADER_LEN + length])
    if attrs is None:
        return None
    fallback = None
    for _, atype, value in attrs:
        if atype in (ATTR_XOR_MAPPED_ADDRESS, ATTR_XOR_MAPPED_ADDRESS_ALT, ATTR_MAPPED_ADDRESS):
            if len(value) < 4:
                return None
            family, xport = value[1], int.from_bytes(value[2:4], "big")
            size = {FAMILY_IPV4: 4, FAMILY_IPV6: 16}.get(family)
            if size is None or len(value) < 4 + size:
                return None
            raw = value[4 : 4 + size]
            if atype == ATTR_MAPPED_ADDRESS:
                fallback = (txid, str(ipaddress.ip_address(raw)), xport)
                continue
            raw = bytes(a ^ b for a, b in zip(raw, _COOKIE + txid))
            return txid, str(ipaddress.ip_address(raw)), xport ^ (MAGIC_COOKIE >> 16)
    return fallback
