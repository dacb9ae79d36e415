"""JT/T 809 framing: 0x5B/0x5D delimiters, 0x5A/0x5E escaping, CRC-16, header, encryption.

Wire layout of one frame (JT/T 809-2011 section 4.3, JT/T 809-2019 section 4.3)::

    5B | header | body | crc u16 | 5D         (everything between the delimiters escaped)

    header 2011 (22 bytes): msg_length u32, msg_sn u32, msg_id u16, access_code u32
                            (MSG_GNSSCENTERID, 接入码), version 3 bytes (01 00 00 = v1.0.0),
                            encrypt_flag u8, encrypt_key u32
    header 2019 (30 bytes): the same, then time u64 (UTC seconds when the frame was sent)
    msg_length: the whole frame *before escaping*, both delimiters included
    crc: CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final XOR) over
         header and body as sent (the body already encrypted), before escaping
    escaping: 5B -> 5A 01, 5A -> 5A 02, 5D -> 5E 01, 5E -> 5E 02

All these choices were checked byte for byte against the frames published in the tests of
SmallChi/JT809 (see ``tests/test_jt809_codec.py`` for each vector's provenance).

Encryption (JT/T 809-2011 section 4.4, simple encryption): with the platform's M1, IA1, IC1
and the header's key, each body byte is XORed with ``(key >> 20) & 0xFF`` after
``key = IA1 * (key % M1) + IC1`` (u32 arithmetic); a key of 0 counts as 1, an M1 of 0 as 1.
The same function decrypts.

Bad frames raise :class:`FrameError` with a ``reason`` (``crc``, ``length``, ``escape``,
``truncated``, ``oversize``); the links drop and count them and keep the connection.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import UTC, datetime

from gps_monitor.errors import PayloadError

HEAD = 0x5B
TAIL = 0x5D
ESCAPE_HEAD = 0x5A
ESCAPE_TAIL = 0x5E

HEADER_2011 = struct.Struct(">IIHI3sBI")
HEADER_2011_BYTES = HEADER_2011.size  # 22
HEADER_2019_BYTES = HEADER_2011_BYTES + 8  # 30
VERSION_2011 = b"\x01\x00\x00"  # v1.0.0, what JT/T 809-2011 platforms send
VERSION_2019 = b"\x01\x02\x0f"  # v1.2.15, JT/T 809-2019
ENCRYPT_NONE = 0
ENCRYPT_SIMPLE = 1

_ESCAPES = {0x5B: b"\x5a\x01", 0x5A: b"\x5a\x02", 0x5D: b"\x5e\x01", 0x5E: b"\x5e\x02"}
_UNESCAPES = {(0x5A, 0x01): 0x5B, (0x5A, 0x02): 0x5A, (0x5E, 0x01): 0x5D, (0x5E, 0x02): 0x5E}


class FrameError(PayloadError):
    """A frame that cannot be decoded; ``reason`` is crc, length, escape, truncated, oversize,
    body or version."""


def crc16(data: bytes | bytearray | memoryview) -> int:
    """CRC-16/CCITT-FALSE of ``data``: poly 0x1021, init 0xFFFF, MSB first, no final XOR.

    Check value: ``crc16(b"123456789") == 0x29B1``.
    """
    crc = 0xFFFF
    table = _CRC_TABLE
    for byte in data:
        crc = ((crc << 8) & 0xFF00) ^ table[(crc >> 8) ^ byte]
    return crc


def _crc_table() -> tuple[int, ...]:
    """CRC-16/CCITT of each byte value (one byte at a time instead of one bit)."""
    table = []
    for value in range(256):
        crc = value << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _crc_table()


def escape(data: bytes) -> bytes:
    """Escape header+body+crc for the wire (5B, 5A, 5D, 5E each become two bytes)."""
    if not any(byte in _ESCAPES for byte in data):
        return data
    out = bytearray()
    for byte in data:
        replacement = _ESCAPES.get(byte)
        if replacement is None:
            out.append(byte)
        else:
            out += replacement
    return bytes(out)


def unescape(data: bytes) -> bytes:
    """Inverse of :func:`escape` on the bytes between the delimiters.

    Raises:
        FrameError(reason="escape"): a 5A or 5E not followed by 01 or 02, or a trailing one.
    """
    if 0x5A not in data and 0x5E not in data:
        return data
    out = bytearray()
    index = 0
    while index < len(data):
        byte = data[index]
        if byte in (ESCAPE_HEAD, ESCAPE_TAIL):
            following = data[index + 1] if index + 1 < len(data) else None
            value = _UNESCAPES.get((byte, following)) if following is not None else None
            if value is None:
                raise FrameError(
                    "escape",
                    f"expected 0x{byte:02x} followed by 01 or 02 at byte {index}, got "
                    f"{'end of frame' if following is None else f'0x{following:02x}'}",
                )
            out.append(value)
            index += 2
        else:
            out.append(byte)
            index += 1
    return bytes(out)


@dataclass(frozen=True, slots=True)
class EncryptionKeys:
    """The platform's simple-encryption constants (JT/T 809-2011 section 4.4), u32 each."""

    m1: int
    ia1: int
    ic1: int


def crypt(data: bytes, key: int, keys: EncryptionKeys) -> bytes:
    """Encrypt or decrypt (the same operation) ``data`` with the header's ``key``."""
    key = key or 1
    m1 = keys.m1 or 1
    out = bytearray(len(data))
    for index, byte in enumerate(data):
        key = (keys.ia1 * (key % m1) + keys.ic1) & 0xFFFFFFFF
        out[index] = byte ^ ((key >> 20) & 0xFF)
    return bytes(out)


@dataclass(frozen=True, slots=True)
class Header:
    """A decoded frame header.

    Attributes:
        msg_length: whole unescaped frame length, delimiters included (bytes).
        msg_sn: the sender's serial number. msg_id: business data type (0x1001, 0x1202...).
        access_code: MSG_GNSSCENTERID, the 接入码 the superior gave this platform.
        version: 3 bytes (01 00 00 = v1.0.0). encrypt_flag: 0 plain, 1 encrypted body.
        encrypt_key: u32 key of the body's encryption.
        sent_at: 2019 only, the UTC time the frame was sent; None in 2011 headers.
    """

    msg_length: int
    msg_sn: int
    msg_id: int
    access_code: int
    version: bytes
    encrypt_flag: int
    encrypt_key: int
    sent_at: datetime | None = None

    @property
    def is_2019(self) -> bool:
        return self.sent_at is not None


@dataclass(frozen=True, slots=True)
class Frame:
    """A decoded frame: header and plain body (decrypted when it was encrypted)."""

    header: Header
    body: bytes

    @property
    def msg_id(self) -> int:
        return self.header.msg_id


@dataclass(frozen=True, slots=True)
class FrameCodec:
    """Encodes and decodes frames of one platform link: version, access code, encryption.

    Attributes:
        version: 2011 or 2019 (header layout; 2019 adds the UTC send time).
        access_code: 接入码 written in every header.
        keys: M1/IA1/IC1 when ``encrypt`` is on (and to decrypt encrypted frames received).
        encrypt: encrypt the bodies this side sends.
        version_flag: the 3-byte version written in headers; default 01 00 00 for 2011 and
            01 02 0F for 2019 (some superiors expect another one: it is only written, never
            checked on frames received).
    """

    version: int = 2011
    access_code: int = 0
    keys: EncryptionKeys | None = None
    encrypt: bool = False
    version_flag: bytes | None = None

    @property
    def header_bytes(self) -> int:
        return HEADER_2019_BYTES if self.version == 2019 else HEADER_2011_BYTES

    def encode(
        self,
        msg_id: int,
        body: bytes,
        msg_sn: int,
        *,
        encrypt_key: int = 0,
        sent_at: datetime | None = None,
    ) -> bytes:
        """One frame for the wire, escaped and delimited.

        ``encrypt_key`` (u32) is used when this codec encrypts; ``sent_at`` (2019 header)
        defaults to now.
        """
        if self.encrypt and self.keys is not None:
            flag, key = ENCRYPT_SIMPLE, encrypt_key
            body = crypt(body, key, self.keys)
        else:
            flag, key = ENCRYPT_NONE, encrypt_key
        length = 1 + self.header_bytes + len(body) + 2 + 1
        version = self.version_flag or (VERSION_2019 if self.version == 2019 else VERSION_2011)
        header = HEADER_2011.pack(
            length, msg_sn & 0xFFFFFFFF, msg_id, self.access_code, version, flag, key
        )
        if self.version == 2019:
            moment = sent_at or datetime.now(UTC)
            header += struct.pack(">Q", int(moment.timestamp()))
        content = header + body
        return bytes([HEAD]) + escape(content + struct.pack(">H", crc16(content))) + bytes([TAIL])

    def decode(self, frame: bytes) -> Frame:
        """A complete wire frame (5B ... 5D) -> :class:`Frame`, body decrypted.

        Raises:
            FrameError: ``truncated`` (shorter than a header and crc), ``escape``, ``crc``
                (the frame's crc differs from the one computed), ``length`` (the header's
                msg_length is not the frame's length), ``body`` (an encrypted body and no keys).
        """
        if len(frame) < 2 or frame[0] != HEAD or frame[-1] != TAIL:
            raise FrameError("truncated", "expected a frame delimited by 5B ... 5D")
        content = unescape(frame[1:-1])
        if len(content) < self.header_bytes + 2:
            raise FrameError(
                "truncated",
                f"expected at least {self.header_bytes + 2} bytes of header and crc, "
                f"got {len(content)}",
            )
        expected_crc = crc16(content[:-2])
        (got_crc,) = struct.unpack_from(">H", content, len(content) - 2)
        if got_crc != expected_crc:
            raise FrameError("crc", f"expected crc 0x{expected_crc:04x}, got 0x{got_crc:04x}")
        length, sn, msg_id, access_code, version, flag, key = HEADER_2011.unpack_from(content)
        if length != len(content) + 2:
            raise FrameError(
                "length", f"expected msg_length {len(content) + 2} (the frame), got {length}"
            )
        sent_at = None
        if self.version == 2019:
            (seconds,) = struct.unpack_from(">Q", content, HEADER_2011_BYTES)
            try:
                sent_at = datetime.fromtimestamp(seconds, UTC)
            except (OverflowError, ValueError, OSError):
                raise FrameError("body", f"expected a UTC time in seconds, got {seconds}") from None
        body = content[self.header_bytes : -2]
        if flag == ENCRYPT_SIMPLE:
            if self.keys is None:
                raise FrameError("body", "encrypted frame but no M1/IA1/IC1 configured")
            body = crypt(body, key, self.keys)
        header = Header(length, sn, msg_id, access_code, bytes(version), flag, key, sent_at)
        return Frame(header, bytes(body))


class FrameSplitter:
    """Cuts a TCP byte stream into wire frames (5B ... 5D).

    Bytes before a 5B are garbage and counted in ``garbage_bytes``. A frame longer than
    ``max_frame_bytes`` (or a buffer that long without a 5D) is dropped and counted in
    ``oversize``, so a peer holds at most ``max_frame_bytes`` of this side's memory.
    """

    def __init__(self, max_frame_bytes: int) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._buffer = bytearray()
        self.garbage_bytes = 0
        self.oversize = 0

    def feed(self, data: bytes) -> list[bytes]:
        """Append ``data``; return the complete frames now available, in order."""
        self._buffer += data
        frames: list[bytes] = []
        while True:
            start = self._buffer.find(HEAD)
            if start < 0:
                self.garbage_bytes += len(self._buffer)
                self._buffer.clear()
                return frames
            if start:
                self.garbage_bytes += start
                del self._buffer[:start]
            end = self._buffer.find(TAIL, 1)
            if end < 0:
                if len(self._buffer) > self.max_frame_bytes:
                    self.oversize += 1
                    self._buffer.clear()
                return frames
            frame = bytes(self._buffer[: end + 1])
            del self._buffer[: end + 1]
            if len(frame) > self.max_frame_bytes:
                self.oversize += 1
                continue
            frames.append(frame)
