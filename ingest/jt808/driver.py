"""Driver identity (issue 12 item 7): 0x0702 driver identity report and the 0x8702 request.

0x0702 驾驶员身份信息采集上报 (JT/T 808-2013 8.47, 2019 8.48); three layouts:

- 2011: name length u8 + name (GBK), ID card number STRING[20], qualification certificate
  number STRING[40], issuing authority length u8 + authority. No status, no time.
- 2013: status u8 (0x01 从业资格证 IC 卡插入 / driver on duty, 0x02 拔出 / off duty), time
  BCD[6] YYMMDDhhmmss (terminal local time, GMT+8 as 0x0200 times); when inserted: IC read
  result u8 (0 ok, 1 card key authentication failed, 2 card locked, 3 card pulled out, 4 data
  checksum error); when the read is ok: name length u8 + name, certificate number STRING[20],
  authority length u8 + authority, validity BCD[4] YYYYMMDD.
- 2019: the 2013 fields, then the driver's ID card number STRING[20].

The layout is found from the bytes, not from the header alone: real 2013-header devices send
the 2019 ID card field (SmallChi's device frame), 2019-header ones sometimes do not
(yezhihao's), and a removal may carry the driver fields too. A body that fits none of the
layouts exactly raises :class:`FrameError` (reason ``body``). Fixed-length strings are read
with their 0x00 padding removed on both sides (devices pad either side); we write them padded
on the right, as yezhihao/jt808-server does.

0x8702 上报驾驶员身份信息请求: empty body; the terminal answers with a 0x0702.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from ingest.jt808.codec import FrameError, bcd_to_digits, digits_to_bcd, gbk_fixed

MSG_DRIVER_IDENTITY = 0x0702
MSG_QUERY_DRIVER = 0x8702

CARD_INSERTED = 0x01
CARD_REMOVED = 0x02
READ_RESULTS = {
    0: "ok",
    1: "key_authentication_failed",
    2: "card_locked",
    3: "card_pulled_out",
    4: "checksum_error",
}


@dataclass(frozen=True, slots=True)
class DriverIdentity:
    """A decoded 0x0702.

    Attributes:
        layout: ``2011``, ``2013`` or ``2019`` (as found in the bytes).
        status: ``inserted`` / ``removed`` (None in the 2011 layout, which has no status).
        card_time_local: card in/out time as the terminal sent it (local time, naive; None in
            2011 or when the BCD is no date).
        read_result: ``ok`` or the failure (None on removal or in 2011); the code when unknown.
        name, certificate_no, issuing_authority: driver name, 从业资格证号, 发证机构.
        valid_until: certificate validity date (None when absent or all zeros).
        id_card_no: 身份证号 (2011 and 2019 layouts).
    """

    layout: str
    status: str | None = None
    card_time_local: datetime | None = None
    read_result: str | int | None = None
    name: str | None = None
    certificate_no: str | None = None
    issuing_authority: str | None = None
    valid_until: date | None = None
    id_card_no: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "layout": self.layout,
            "status": self.status,
            "card_time_local": self.card_time_local.isoformat() if self.card_time_local else None,
            "read_result": self.read_result,
            "name": self.name,
            "certificate_no": self.certificate_no,
            "issuing_authority": self.issuing_authority,
            "valid_until": self.valid_until.isoformat() if self.valid_until else None,
            "id_card_no": self.id_card_no,
        }


def _text(raw: bytes) -> str | None:
    value = raw.strip(b"\x00").decode("gbk", errors="replace").strip()
    return value or None


class _Reader:
    def __init__(self, body: bytes) -> None:
        self.body, self.at = body, 0

    def take(self, n: int) -> bytes:
        if self.at + n > len(self.body):
            raise ValueError(f"needs {self.at + n} bytes, body has {len(self.body)}")
        out = self.body[self.at : self.at + n]
        self.at += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def prefixed(self) -> bytes:
        return self.take(self.u8())

    @property
    def left(self) -> int:
        return len(self.body) - self.at


def _bcd_time(raw: bytes) -> datetime | None:
    if not raw.hex().isdigit():
        return None
    try:
        return datetime.strptime(bcd_to_digits(raw), "%y%m%d%H%M%S")
    except ValueError:
        return None


def _bcd_date(raw: bytes) -> date | None:
    if not raw.hex().isdigit() or raw == b"\x00" * 4:
        return None
    try:
        return datetime.strptime(bcd_to_digits(raw), "%Y%m%d").date()
    except ValueError:
        return None


def _decode_2013(body: bytes) -> DriverIdentity:
    r = _Reader(body)
    status_code = r.u8()
    if status_code not in (CARD_INSERTED, CARD_REMOVED):
        raise ValueError(f"status 0x{status_code:02x} is neither 0x01 nor 0x02")
    card_time = _bcd_time(r.take(6))
    status = "inserted" if status_code == CARD_INSERTED else "removed"
    if status == "removed" and r.left == 0:
        return DriverIdentity("2013", status, card_time)
    read_code: int | None = None
    if status == "inserted":
        read_code = r.u8()
        if read_code != 0:
            if r.left:
                raise ValueError(f"{r.left} bytes after a failed card read")
            return DriverIdentity("2013", status, card_time, READ_RESULTS.get(read_code, read_code))
    else:
        r.u8()  # a removal that repeats the driver fields (yezhihao's frames): read byte too
    name = _text(r.prefixed())
    certificate = _text(r.take(20))
    authority = _text(r.prefixed())
    valid = _bcd_date(r.take(4))
    layout, id_card = "2013", None
    if r.left == 20:
        layout, id_card = "2019", _text(r.take(20))
    if r.left:
        raise ValueError(f"{r.left} bytes left over")
    result = READ_RESULTS[0] if read_code == 0 else None
    return DriverIdentity(
        layout, status, card_time, result, name, certificate, authority, valid, id_card
    )


def _decode_2011(body: bytes) -> DriverIdentity:
    r = _Reader(body)
    name = _text(r.prefixed())
    id_card = _text(r.take(20))
    certificate = _text(r.take(40))
    authority = _text(r.prefixed())
    if r.left:
        raise ValueError(f"{r.left} bytes left over")
    return DriverIdentity(
        "2011", name=name, certificate_no=certificate, issuing_authority=authority,
        id_card_no=id_card,
    )  # fmt: skip


def decode_driver_identity(body: bytes) -> DriverIdentity:
    """0x0702 body -> :class:`DriverIdentity` (layout found from the bytes, module docstring).

    Raises:
        FrameError(reason="body"): the body fits neither the 2013/2019 nor the 2011 layout.
    """
    problems = []
    for decode in (_decode_2013, _decode_2011):
        try:
            return decode(body)
        except ValueError as error:
            problems.append(f"{decode.__name__[8:]} layout: {error}")
    raise FrameError(
        "body", f"0x0702: expected a 2011, 2013 or 2019 driver identity ({'; '.join(problems)}),"
        f" got {body.hex()}",
    )  # fmt: skip


def _prefixed(value: str | None) -> bytes:
    raw = (value or "").encode("gbk")[:255]
    return bytes([len(raw)]) + raw


def encode_driver_identity(identity: DriverIdentity) -> bytes:
    """0x0702 body in ``identity.layout`` (terminal side: jt808-sim, tests). A removal carries
    only status and time; an inserted card with a failed read only the read result.

    Raises:
        ValueError: a name or authority GBK cannot encode.
    """
    if identity.layout == "2011":
        return (
            _prefixed(identity.name) + gbk_fixed(identity.id_card_no, 20)
            + gbk_fixed(identity.certificate_no, 40) + _prefixed(identity.issuing_authority)
        )  # fmt: skip
    inserted = identity.status == "inserted"
    when = identity.card_time_local or datetime(2000, 1, 1)
    out = bytes([CARD_INSERTED if inserted else CARD_REMOVED])
    out += digits_to_bcd(when.strftime("%y%m%d%H%M%S"), 6)
    if not inserted:
        return out
    codes = {v: k for k, v in READ_RESULTS.items()}
    result = identity.read_result if identity.read_result is not None else "ok"
    code = result if isinstance(result, int) else codes[result]
    out += bytes([code])
    if code != 0:
        return out
    out += _prefixed(identity.name) + gbk_fixed(identity.certificate_no, 20)
    out += _prefixed(identity.issuing_authority)
    valid = identity.valid_until
    out += digits_to_bcd(valid.strftime("%Y%m%d"), 4) if valid else b"\x00" * 4
    if identity.layout == "2019":
        out += gbk_fixed(identity.id_card_no, 20)
    return out
