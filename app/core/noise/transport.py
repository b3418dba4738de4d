"""The TS2021 record layer after the handshake (PROTOCOL.md 2.5).

Each direction has its own key and a 64-bit record counter starting at 0. Unlike the Noise
spec, the 12-byte ChaCha20-Poly1305 nonce is 4 zero bytes followed by the counter in
**big-endian** order. AD is empty. The counter value 2**64-1 is never used: a direction that
reaches it is exhausted. A record is ``0x04 | u16 len | ciphertext`` and a frame is at most
4096 bytes, so one record carries at most 4077 bytes of plaintext; zero-length records are
legal and decrypt to ``b""``.

Any error is fatal for its direction (the Go implementation does the same): after a bad
record nothing further can be decrypted, after an exhausted counter nothing can be sent;
later calls raise TransportClosed.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from .errors import (
    DecryptError,
    FrameTooLargeError,
    NoiseError,
    NonceExhausted,
    RecordTypeError,
    TransportClosed,
)
from .messages import HEADER_LEN, MAX_CIPHERTEXT_LEN, MAX_FRAME_LEN, MAX_PLAINTEXT_LEN, MSG_RECORD, TAG_LEN

INVALID_NONCE = 2**64 - 1
_nonce = struct.Struct(">4xQ").pack  # 4 zero bytes + u64 big-endian counter
_header = struct.Struct(">BH").pack


def sealed_len(size: int) -> int:
    """Bytes on the wire for ``size`` bytes of plaintext sent as full records and one remainder."""
    return size + -(-size // MAX_PLAINTEXT_LEN) * (HEADER_LEN + TAG_LEN)


def record_nonce(counter: int) -> bytes:
    """The 12-byte AEAD nonce for the record numbered ``counter``."""
    return _nonce(counter)


class NoiseTransport:
    """Encrypts outgoing bytes into records and decrypts incoming records. Sans-I/O."""

    __slots__ = ("_buf", "_rx", "_rx_error", "_rx_n", "_tx", "_tx_error", "_tx_n")

    def __init__(self, send_key: bytes, receive_key: bytes, *, send_nonce: int = 0,
                 receive_nonce: int = 0) -> None:
        # One AEAD object per direction: building one per record costs more than the crypto.
        self._tx = ChaCha20Poly1305(send_key)
        self._rx = ChaCha20Poly1305(receive_key)
        self._tx_n = send_nonce
        self._rx_n = receive_nonce
        self._buf = bytearray()  # an incomplete record carried over between receive_data calls
        self._tx_error: NoiseError | None = None
        self._rx_error: NoiseError | None = None

    @property
    def send_nonce(self) -> int:
        """Counter of the next record to send."""
        return self._tx_n

    @property
    def receive_nonce(self) -> int:
        """Counter of the next record expected."""
        return self._rx_n

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete incoming record held back."""
        return len(self._buf)

    # -- sending -------------------------------------------------------------------------

    def encrypt(self, plaintext: bytes) -> bytes:
        """Records carrying ``plaintext``, split every 4077 bytes. ``b""`` yields ``b""``."""
        if self._tx_error is not None:
            raise TransportClosed(self._tx_error)
        size = len(plaintext)
        if size <= MAX_PLAINTEXT_LEN:
            return self._seal(plaintext) if size else b""
        count = -(-size // MAX_PLAINTEXT_LEN)
        self._reserve(count)
        view = memoryview(plaintext)
        seal = self._tx.encrypt
        n = self._tx_n
        out = []
        for start in range(0, size, MAX_PLAINTEXT_LEN):
            chunk = view[start:start + MAX_PLAINTEXT_LEN]
            out.append(_header(MSG_RECORD, len(chunk) + TAG_LEN))
            out.append(seal(_nonce(n), chunk, None))
            n += 1
        self._tx_n = n
        return b"".join(out)

    def encrypt_parts(self, parts: Sequence[bytes | memoryview]) -> bytes | bytearray:
        """Exactly ``encrypt(b"".join(parts))``, without building that join."""
        size = sum(map(len, parts))
        if size <= MAX_PLAINTEXT_LEN:
            return self.encrypt(b"".join(parts))
        out = bytearray(sealed_len(size))
        self.encrypt_parts_into(parts, out)
        return out

    def encrypt_parts_into(self, parts: Sequence[bytes | memoryview], out: bytearray) -> int:
        """The records of ``encrypt(b"".join(parts))`` written into the start of ``out``, which
        must hold at least ``sealed_len`` of the parts' size; returns how many bytes that is.

        A record inside one part is sealed from it straight into ``out``; only one that spans
        parts (a 9-byte HTTP/2 frame header and its payload, say) is gathered first. A writer that
        reuses ``out`` seals a 1.3 MB map with no allocation the size of the map (one per map
        was page faults on every write in a restart storm)."""
        if self._tx_error is not None:
            raise TransportClosed(self._tx_error)
        size = sum(map(len, parts))
        if not size:
            return 0
        if len(out) < sealed_len(size):
            raise ValueError("output buffer too small for the sealed records")
        count = -(-size // MAX_PLAINTEXT_LEN)
        self._reserve(count)
        seal = self._tx.encrypt_into
        n = self._tx_n
        dst = memoryview(out)
        gather = memoryview(bytearray(MAX_PLAINTEXT_LEN))   # a record whose bytes span parts
        have = 0
        at = 0
        full = _header(MSG_RECORD, MAX_PLAINTEXT_LEN + TAG_LEN)
        step = MAX_PLAINTEXT_LEN + TAG_LEN
        for part in parts:
            view = memoryview(part)
            end, pos = len(view), 0
            if have:
                pos = min(MAX_PLAINTEXT_LEN - have, end)
                gather[have:have + pos] = view[:pos]
                have += pos
                if have < MAX_PLAINTEXT_LEN:
                    continue
                dst[at:at + HEADER_LEN] = full
                at += HEADER_LEN
                seal(_nonce(n), gather, None, dst[at:at + step])
                at += step
                n += 1
                have = 0
            while end - pos >= MAX_PLAINTEXT_LEN:
                dst[at:at + HEADER_LEN] = full
                at += HEADER_LEN
                seal(_nonce(n), view[pos:pos + MAX_PLAINTEXT_LEN], None, dst[at:at + step])
                at += step
                n += 1
                pos += MAX_PLAINTEXT_LEN
            if pos < end:
                have = end - pos
                gather[:have] = view[pos:]
        if have:
            dst[at:at + HEADER_LEN] = _header(MSG_RECORD, have + TAG_LEN)
            at += HEADER_LEN
            seal(_nonce(n), gather[:have], None, dst[at:at + have + TAG_LEN])
            at += have + TAG_LEN
            n += 1
        self._tx_n = n
        return at

    def encrypt_record(self, plaintext: bytes) -> bytes:
        """Exactly one record (possibly empty); plaintext must fit in one frame."""
        if self._tx_error is not None:
            raise TransportClosed(self._tx_error)
        if len(plaintext) > MAX_PLAINTEXT_LEN:
            raise ValueError(f"a record holds at most {MAX_PLAINTEXT_LEN} plaintext bytes")
        return self._seal(plaintext)

    def _seal(self, plaintext: bytes) -> bytes:
        self._reserve(1)
        n = self._tx_n
        self._tx_n = n + 1
        return _header(MSG_RECORD, len(plaintext) + TAG_LEN) + self._tx.encrypt(_nonce(n), plaintext, None)

    def _reserve(self, count: int) -> None:
        # Checked up front so a multi-record write is all-or-nothing.
        if self._tx_n + count > INVALID_NONCE:
            self._tx_error = NonceExhausted("send")
            raise self._tx_error

    # -- receiving -----------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[bytes]:
        """Plaintexts of the complete records now available, in order (some may be empty).

        Raises RecordTypeError, FrameTooLargeError, DecryptError or NonceExhausted; the
        plaintexts of earlier records in the same call are then lost with the connection.
        """
        if self._rx_error is not None:
            raise TransportClosed(self._rx_error)
        buf = self._buf
        if buf:
            buf += data
            src: bytes | bytearray = buf
        else:
            src = data  # common case: parse the caller's bytes without copying them first
        out: list[bytes] = []
        end_of_data = len(src)
        pos = 0
        open_ = self._rx.decrypt
        n = self._rx_n
        with memoryview(src) as view:
            try:
                while end_of_data - pos >= HEADER_LEN:
                    if src[pos] != MSG_RECORD:
                        raise RecordTypeError(src[pos], MSG_RECORD)
                    length = (src[pos + 1] << 8) | src[pos + 2]
                    if length > MAX_CIPHERTEXT_LEN:
                        raise FrameTooLargeError(HEADER_LEN + length, MAX_FRAME_LEN)
                    end = pos + HEADER_LEN + length
                    if end > end_of_data:
                        break
                    if n >= INVALID_NONCE:
                        raise NonceExhausted("receive")
                    try:
                        out.append(open_(_nonce(n), view[pos + HEADER_LEN:end], None))
                    except InvalidTag:
                        raise DecryptError(n) from None
                    n += 1
                    pos = end
            except NoiseError as exc:
                self._rx_n = n
                self._rx_error = exc
                self._buf = bytearray()
                raise
        self._rx_n = n
        if src is buf:
            del buf[:pos]
        elif pos < end_of_data:
            self._buf = bytearray(data[pos:])
        return out
