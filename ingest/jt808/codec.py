"""JT/T 808 framing: 0x7E delimiters, 0x7D escaping, XOR checksum, message header, stream splitter.

Wire layout of one frame (JT/T 808-2013 section 4.4, JT/T 808-2019 section 4.4)::

    7E | header | body | checksum | 7E            (everything between the 7Es escaped)

    header 2011/2013: msg_id u16, props u16, phone BCD[6],  serial u16 [, total u16, index u16]
    header 2019:      msg_id u16, props u16, version u8, phone BCD[10], serial u16 [, ...]
    phone: BCD by the standard; some devices put other nibbles (A-F) there, which are accepted
           and kept as the field's hex (:attr:`Header.phone`, :func:`phone_field`)
    props: bits 0-9 body length, 10-12 encryption (bit 10 = RSA), 13 sub-packaged,
           14 version flag (2019 header), 15 reserved
    checksum: XOR of every byte of header and body (before escaping)
    escaping: 7E -> 7D 02, 7D -> 7D 01

Bad frames raise :class:`FrameError` with a short ``reason`` (``checksum``, ``length``,
``escape``, ``truncated``); the server drops and counts them and keeps the connection.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from functools import reduce
from operator import xor

from gps_monitor.errors import PayloadError

DELIMITER = 0x7E
ESCAPE = 0x7D

PROPS_LENGTH_MASK = 0x03FF
PROPS_ENCRYPTION_MASK = 0x1C00
PROPS_SUBPACKAGE = 1 << 13
PROPS_VERSION_FLAG = 1 << 14

PHONE_BYTES_2013 = 6
PHONE_BYTES_2019 = 10
MAX_BODY_BYTES = PROPS_LENGTH_MASK
_BAD_ESCAPE = re.compile(rb"\x7d(?![\x01\x02])")  # 7D not followed by 01/02, or trailing


class FrameError(PayloadError):
    """A frame that cannot be decoded; ``reason`` is checksum, length, escape or truncated."""


def checksum(data: bytes | bytearray | memoryview) -> int:
    """XOR of all bytes (the JT/T 808 check code); 0 for empty input.

    Folds the bytes as one integer, halving its width each step (log2(n) C-level operations
    instead of a Python step per byte: a 1 KB photo packet costs ~5 µs, not ~50 µs)."""
    width = len(data)
    if width < 16:
        return reduce(xor, data, 0)
    value = int.from_bytes(data, "little")
    while width > 1:
        half = (width + 1) // 2
        value = (value & ((1 << (8 * half)) - 1)) ^ (value >> (8 * half))
        width = half
    return value


def escape(data: bytes) -> bytes:
    """Escape header+body+checksum for the wire: 7D -> 7D 01 first, then 7E -> 7D 02."""
    return data.replace(b"\x7d", b"\x7d\x01").replace(b"\x7e", b"\x7d\x02")


def unescape(data: bytes) -> bytes:
    """Inverse of :func:`escape` on the bytes between the delimiters.

    Raises:
        FrameError(reason="escape"): a 7D not followed by 01 or 02 (an unescaped byte), or a
            trailing 7D.
    """
    if b"\x7d" not in data:
        return data
    bad = _BAD_ESCAPE.search(data)
    if bad is not None:
        i = bad.start()
        got = data[i : i + 2].hex()
        raise FrameError("escape", f"expected 7d01 or 7d02 at offset {i}, got {got}")
    # every 7D is followed by 01 or 02 here, so 7D02 never straddles an escaped 7D (7D01)
    return data.replace(b"\x7d\x02", b"\x7e").replace(b"\x7d\x01", b"\x7d")


def bcd_to_digits(data: bytes) -> str:
    """BCD bytes -> decimal digit string, two digits per byte, leading zeros kept.

    Raises:
        FrameError(reason="bcd"): a nibble above 9.
    """
    text = data.hex()
    if not text.isdigit():
        raise FrameError("bcd", f"expected BCD digits, got {text}")
    return text


def phone_field(phone: str, size: int) -> bytes:
    """The ``size``-byte phone field of a header for ``phone``: decimal digits as BCD,
    left-padded with zeros, or the field's own hex when it is not BCD (exactly ``2 * size`` hex
    digits, as :attr:`Header.phone` keeps a non-BCD field), so a reply carries the terminal's
    field byte for byte.

    Raises:
        PayloadError(reason="bad_terminal_id"): neither of the two.
    """
    if phone.isdigit() and len(phone) <= 2 * size:
        return bytes.fromhex(phone.rjust(2 * size, "0"))
    if len(phone) == 2 * size and all(c in "0123456789abcdefABCDEF" for c in phone):
        return bytes.fromhex(phone)
    raise PayloadError(
        "bad_terminal_id",
        f"expected at most {2 * size} decimal digits (BCD[{size}]) or exactly {2 * size} hex "
        f"digits (a non-BCD field as received), got {phone!r}",
    )


def gbk_fixed(value: str | None, size: int) -> bytes:
    """A fixed-width JT/T 808 STRING field: ``value`` (None: empty) in GBK, cut to ``size`` bytes
    or padded with NUL bytes to them. A cut falls between characters: a two-byte character
    that does not fit whole is left out, not halved (half of one reads as another character
    or as garbage on the other side).

    Raises:
        UnicodeEncodeError: ``value`` has a character GBK cannot encode.
    """
    encoded = (value or "").encode("gbk")
    if len(encoded) > size:
        fitted = bytearray()
        for character in value or "":
            code = character.encode("gbk")
            if len(fitted) + len(code) > size:
                break
            fitted += code
        encoded = bytes(fitted)
    return encoded.ljust(size, b"\x00")


def digits_to_bcd(digits: str, size: int) -> bytes:
    """Decimal digit string -> ``size`` BCD bytes, left-padded with zeros.

    Raises:
        PayloadError(reason="bad_terminal_id"): not digits, or more than ``2 * size`` of them.
    """
    if not digits.isdigit() or len(digits) > 2 * size:
        raise PayloadError(
            "bad_terminal_id",
            f"expected at most {2 * size} decimal digits for a BCD[{size}] field, got {digits!r}",
        )
    return bytes.fromhex(digits.rjust(2 * size, "0"))


def terminal_id_from_phone(phone_digits: str) -> str:
    """The terminal id used on MQTT and in ``vehicles.terminal_id``: the BCD phone number's
    digits with leading zeros stripped ("013511221122" and "00000000013511221122" are both
    "13511221122", so a terminal keeps its id across the 2013 and 2019 headers); "0" if all zero.
    A non-BCD field (:attr:`Header.phone`, lowercase hex) follows the same rule:
    ``01a511221122`` -> ``1a511221122``.
    """
    return phone_digits.lstrip("0") or "0"


@dataclass(frozen=True, slots=True)
class Header:
    """A decoded message header.

    Attributes:
        msg_id: message id (0x0200 location report...).
        phone: terminal phone number as BCD digits, leading zeros kept (12 or 20 digits).
            A field with non-BCD nibbles (some devices in the field) is kept as its lowercase
            hex, 12 or 20 characters, instead of refusing the frame (as traccar and
            jt808-server accept such ids); :attr:`phone_is_bcd` tells them apart.
        serial: message serial number (流水号), u16.
        version: protocol version byte of a 2019 header (1 = 2019), None for 2011/2013.
        encryption: props bits 10-12 (0 = plain, 1 = RSA).
        subpackage_total, subpackage_index: 1-based packet index and packet count of a
            sub-packaged message, None otherwise.
        body_length: body length from props (bytes).
    """

    msg_id: int
    phone: str
    serial: int
    version: int | None = None
    encryption: int = 0
    subpackage_total: int | None = None
    subpackage_index: int | None = None
    body_length: int = 0

    @property
    def is_2019(self) -> bool:
        return self.version is not None

    @property
    def terminal_id(self) -> str:
        return terminal_id_from_phone(self.phone)

    @property
    def phone_is_bcd(self) -> bool:
        """Whether the phone field was BCD as the standard wants (else it holds hex A-F)."""
        return self.phone.isdigit()


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded frame: header, body (unescaped) and the wire bytes it came from.

    A reassembled sub-packaged message has ``wire`` = its packets' wire bytes concatenated and
    ``packet_parts`` = (wire bytes, body length) of each packet in index order (empty for a
    single frame).
    """

    header: Header
    body: bytes
    wire: bytes
    packet_parts: tuple[tuple[bytes, int], ...] = ()

    @property
    def packets(self) -> tuple[tuple[bytes, int], ...]:
        """(wire bytes, body length) of each frame as received that makes up this message, in
        order (one for a single frame)."""
        return self.packet_parts or ((self.wire, len(self.body)),)


def decode_frame(content: bytes, wire: bytes | None = None) -> Frame:
    """Decode the escaped bytes between two 0x7E delimiters.

    Args:
        content: escaped bytes, delimiters excluded.
        wire: the frame as received (with delimiters) kept as evidence; default rebuilt from
            ``content``.

    Raises:
        FrameError: ``escape`` (bad 7D sequence), ``truncated`` (shorter than its header),
            ``checksum`` (XOR mismatch), ``length`` (body length differs from the header's).
    """
    data = unescape(content)
    if len(data) < 2 + 2 + PHONE_BYTES_2013 + 2 + 1:
        raise FrameError(
            "truncated", f"expected at least 13 bytes of header+checksum, got {len(data)}"
        )
    expected_sum = checksum(memoryview(data)[:-1])
    if expected_sum != data[-1]:
        raise FrameError(
            "checksum", f"expected XOR check code {expected_sum:02x}, got {data[-1]:02x}"
        )
    msg_id, props = struct.unpack_from(">HH", data, 0)
    offset = 4
    version: int | None = None
    phone_bytes = PHONE_BYTES_2013
    if props & PROPS_VERSION_FLAG:
        version = data[offset]
        offset += 1
        phone_bytes = PHONE_BYTES_2019
    header_end = offset + phone_bytes + 2
    subpackaged = bool(props & PROPS_SUBPACKAGE)
    if subpackaged:
        header_end += 4
    if len(data) - 1 < header_end:
        raise FrameError(
            "truncated", f"expected a {header_end}-byte header, got {len(data) - 1} bytes"
        )
    phone = data[offset : offset + phone_bytes].hex()  # the BCD digits, or the field's hex
    offset += phone_bytes
    (serial,) = struct.unpack_from(">H", data, offset)
    offset += 2
    total = index = None
    if subpackaged:
        total, index = struct.unpack_from(">HH", data, offset)
        offset += 4
    body = data[offset:-1]
    body_length = props & PROPS_LENGTH_MASK
    if len(body) != body_length:
        raise FrameError(
            "length", f"expected a {body_length}-byte body (header), got {len(body)} bytes"
        )
    header = Header(
        msg_id=msg_id,
        phone=phone,
        serial=serial,
        version=version,
        encryption=(props & PROPS_ENCRYPTION_MASK) >> 10,
        subpackage_total=total,
        subpackage_index=index,
        body_length=body_length,
    )
    if wire is None:
        wire = b"\x7e" + content + b"\x7e"
    return Frame(header=header, body=body, wire=wire)


def encode_frame(
    msg_id: int,
    phone: str,
    serial: int,
    body: bytes = b"",
    *,
    version: int | None = None,
    subpackage: tuple[int, int] | None = None,
) -> bytes:
    """Build a complete wire frame (delimiters, escaping, checksum).

    Args:
        msg_id: message id.
        phone: BCD digits of the terminal phone (padded to 12 or, with ``version``, 20 digits),
            or the hex of a non-BCD field as decoded (:func:`phone_field`).
        serial: message serial number, taken modulo 65536.
        body: message body, at most 1023 bytes.
        version: 2019 protocol version byte (sets the version flag), None for a 2013 header.
        subpackage: (total, index) for one packet of a sub-packaged message.

    Raises:
        PayloadError: body longer than 1023 bytes or a phone :func:`phone_field` refuses.
    """
    if len(body) > MAX_BODY_BYTES:
        raise PayloadError("oversize", f"expected a body of at most 1023 bytes, got {len(body)}")
    props = len(body)
    if version is not None:
        props |= PROPS_VERSION_FLAG
        phone_part = bytes([version]) + phone_field(phone, PHONE_BYTES_2019)
    else:
        phone_part = phone_field(phone, PHONE_BYTES_2013)
    if subpackage is not None:
        props |= PROPS_SUBPACKAGE
    parts = [struct.pack(">HH", msg_id, props), phone_part, struct.pack(">H", serial & 0xFFFF)]
    if subpackage is not None:
        parts.append(struct.pack(">HH", *subpackage))
    parts.append(body)
    data = b"".join(parts)
    return b"\x7e" + escape(data + bytes([checksum(data)])) + b"\x7e"


class FrameSplitter:
    """Cuts a TCP byte stream into frame contents at 0x7E delimiters.

    Every 0x7E is a boundary; the bytes between two consecutive 0x7Es are one candidate frame
    (empty candidates, i.e. ``7E 7E`` between back-to-back frames, are skipped). Bytes before
    the first 0x7E of the stream cannot be a frame and are counted in ``garbage_bytes``; bytes
    between a closing and the next opening 0x7E come out as a candidate that fails to decode,
    so garbage never hides the next frame. The splitter never holds more than
    ``max_frame_bytes``: a buffer that grows past it without a delimiter (a peer that never
    sends 0x7E) is dropped and the splitter waits for the next 0x7E, and a candidate longer
    than that (no frame is: a 1023-byte body escapes to ~2.1 kB) is dropped without being
    decoded; both count in ``overflows``.

    ``feed(data)`` returns ``[(content, wire)]`` for each complete candidate: ``content`` is
    the escaped bytes between the delimiters, ``wire`` the same with the delimiters.
    """

    __slots__ = ("_buffer", "_synced", "garbage_bytes", "max_frame_bytes", "overflows")

    def __init__(self, max_frame_bytes: int = 4096) -> None:
        self._buffer = b""
        self._synced = False
        self.max_frame_bytes = max_frame_bytes
        self.garbage_bytes = 0
        self.overflows = 0

    @property
    def buffered_bytes(self) -> int:
        """Bytes held while waiting for the next 0x7E (at most ``max_frame_bytes``)."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        """Append received bytes; return the complete candidate frames, oldest first."""
        buffer = self._buffer + data if self._buffer else data
        parts = buffer.split(b"\x7e")
        self._buffer = parts.pop()
        out: list[tuple[bytes, bytes]] = []
        if parts:
            if not self._synced:
                self.garbage_bytes += len(parts[0])
                parts = parts[1:]
                self._synced = True
            limit = self.max_frame_bytes
            for part in parts:
                if len(part) > limit:
                    self.overflows += 1
                elif part:
                    out.append((part, b"\x7e" + part + b"\x7e"))
        if len(self._buffer) > self.max_frame_bytes:
            self.overflows += 1
            self._buffer = b""
            self._synced = False
        return out


class SubpackageBudget:
    """Bytes held by the sub-package reassembly of every connection of one gateway, against
    ``max_total_bytes`` (a packet counts its body plus its wire bytes: what is kept of it)."""

    __slots__ = ("held_bytes", "max_total_bytes")

    def __init__(self, max_total_bytes: int) -> None:
        self.max_total_bytes = max_total_bytes
        self.held_bytes = 0


class SubpackageRefused(FrameError):
    """A packet the assembler will not hold (``reason``: ``subpackage_packets``,
    ``subpackage_connection_bytes`` or ``subpackage_total_bytes``); the message it belongs to
    is dropped with it."""


def packet_bytes(frame: Frame) -> int:
    """What holding one packet costs: its body plus its wire bytes."""
    return len(frame.body) + len(frame.wire)


class SubpackageAssembler:
    """Reassembles sub-packaged messages (props bit 13) of one connection, within byte caps.

    Packets of one message share ``msg_id`` and ``total`` and carry consecutive serial numbers
    (JT/T 808-2013 section 4.4.3; 2019's 0x8003 names the first packet's serial), so the key is
    (msg_id, total, serial of packet 1). Incomplete messages older than ``timeout_s`` and the
    oldest beyond ``max_pending`` are dropped and counted in ``expired``.

    Limits (a packet over one is refused with :class:`SubpackageRefused` and its whole message
    dropped, so nothing is held for it): ``total`` at most ``max_packets``; this connection's
    held bytes at most ``max_connection_bytes``; all connections' (``budget``) at most
    ``budget.max_total_bytes``. :meth:`clear` frees everything (connection closed).
    """

    __slots__ = (
        "_pending",
        "budget",
        "expired",
        "held_bytes",
        "max_connection_bytes",
        "max_packets",
        "max_pending",
        "timeout_s",
    )

    def __init__(
        self,
        timeout_s: float = 60.0,
        max_pending: int = 16,
        *,
        max_packets: int = 128,
        max_connection_bytes: int = 256 * 1024,
        budget: SubpackageBudget | None = None,
    ) -> None:
        self._pending: dict[tuple[int, int, int], tuple[float, dict[int, Frame]]] = {}
        self.timeout_s = timeout_s
        self.max_pending = max_pending
        self.max_packets = max_packets
        self.max_connection_bytes = max_connection_bytes
        self.budget = budget if budget is not None else SubpackageBudget(max_connection_bytes)
        self.expired = 0
        self.held_bytes = 0

    def add(self, frame: Frame, now_s: float) -> Frame | None:
        """Add one packet; return the whole message once every packet is in, else None.

        The returned frame has the first packet's header without sub-package fields and with
        the serial of the packet that completed the message (the one to answer), the
        concatenated body and the packets' wire bytes concatenated in index order.

        Raises:
            FrameError(reason="subpackage"): index 0, index above total, or total 0.
            SubpackageRefused: total above ``max_packets``, or holding the packet would pass
                the connection's or the gateway's byte cap (the message is dropped).
        """
        header = frame.header
        total, index = header.subpackage_total, header.subpackage_index
        if total is None or index is None:
            return frame
        if total == 0 or not 1 <= index <= total:
            raise FrameError("subpackage", f"expected 1 <= index <= total, got {index}/{total}")
        if total > self.max_packets:
            raise SubpackageRefused(
                "subpackage_packets",
                f"expected at most {self.max_packets} packets per message, got total {total}",
            )
        self._expire(now_s)
        key = (header.msg_id, total, (header.serial - (index - 1)) & 0xFFFF)
        _started, packets = self._pending.setdefault(key, (now_s, {}))
        previous = packets.get(index)
        grow = packet_bytes(frame) - (packet_bytes(previous) if previous is not None else 0)
        self._check_room(key, grow)
        packets[index] = frame
        self._account(grow)
        if len(packets) < total:
            if len(self._pending) > self.max_pending:
                oldest = min(self._pending, key=lambda k: self._pending[k][0])
                self._drop(oldest)
                self.expired += 1
            return None
        self._drop(key)
        ordered = [packets[i] for i in range(1, total + 1)]
        first = ordered[0].header
        whole = Header(
            msg_id=first.msg_id,
            phone=first.phone,
            serial=header.serial,  # the packet that completed it: the one the reply answers
            version=first.version,
            encryption=first.encryption,
            body_length=sum(len(p.body) for p in ordered),
        )
        return Frame(
            header=whole,
            body=b"".join(p.body for p in ordered),
            wire=b"".join(p.wire for p in ordered),
            packet_parts=tuple((p.wire, len(p.body)) for p in ordered),
        )

    def _check_room(self, key: tuple[int, int, int], grow: int) -> None:
        if grow <= 0:
            return
        if self.held_bytes + grow > self.max_connection_bytes:
            reason, limit, whose = "subpackage_connection_bytes", self.max_connection_bytes, "this"
        elif self.budget.held_bytes + grow > self.budget.max_total_bytes:
            reason, limit, whose = "subpackage_total_bytes", self.budget.max_total_bytes, "all"
        else:
            return
        self._drop(key)
        raise SubpackageRefused(
            reason,
            f"expected at most {limit} bytes held for unfinished messages of {whose} "
            f"connection(s), a {grow}-byte packet would pass it",
        )

    def _account(self, delta: int) -> None:
        self.held_bytes += delta
        self.budget.held_bytes += delta

    def _drop(self, key: tuple[int, int, int]) -> None:
        entry = self._pending.pop(key, None)
        if entry is not None:
            self._account(-sum(packet_bytes(p) for p in entry[1].values()))

    def _expire(self, now_s: float) -> None:
        stale = [k for k, (t, _) in self._pending.items() if now_s - t > self.timeout_s]
        for key in stale:
            self._drop(key)
            self.expired += 1

    def clear(self) -> None:
        """Drop every unfinished message and give its bytes back to the budget."""
        for key in list(self._pending):
            self._drop(key)

    @property
    def pending(self) -> int:
        return len(self._pending)
