"""Photo and video evidence (issue 12 items 6 and 8): what a media item is, the ``take_photo``
command body, and the names a stored item is known by.

A media item comes from a terminal, either as a JT/T 808 multimedia upload (0x0801, source
``jt808``) or as a T/JSATL 12-2017 active-safety attachment (source ``jsatl``). Its bytes are kept
by :mod:`gps_monitor.media_store` under their SHA-256; its row (table ``media``, migration 0135)
says what it is, where and when it was taken, and which alarm and command it belongs to.

File names sent by a terminal are text to show, never a path: the stored name is always
``{sha256}.{extension}`` (:func:`stored_name`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from gps_monitor.commands import Command, new_command_id

TAKE_PHOTO = "take_photo"  #: command name: JT/T 808 0x8801 (camera, shoot now)

#: JT/T 808-2013 table 78 (0x0800/0x0801 multimedia type) -> our name
MEDIA_TYPES: dict[int, str] = {0: "image", 1: "audio", 2: "video"}
#: JT/T 808-2013 table 78 (coding format) -> (name, MIME type, file extension)
MEDIA_FORMATS: dict[int, tuple[str, str, str]] = {
    0: ("jpeg", "image/jpeg", "jpg"),
    1: ("tif", "image/tiff", "tif"),
    2: ("mp3", "audio/mpeg", "mp3"),
    3: ("wav", "audio/wav", "wav"),
    4: ("wmv", "video/x-ms-wmv", "wmv"),
}
#: JT/T 808-2013 table 78 event item code (0x0800/0x0801) -> meaning
EVENT_CODES: dict[int, str] = {
    0: "platform_command",
    1: "timed",
    2: "robbery_alarm",
    3: "collision_rollover",
    4: "door_open",
    5: "door_close",
    6: "door_open_to_close_speed",
    7: "fixed_distance",
}
OCTET_STREAM = "application/octet-stream"

#: T/JSATL 12-2017 attachment file types (0x1211 file type) -> (name, MIME type, extension)
JSATL_FILE_TYPES: dict[int, tuple[str, str, str]] = {
    0x00: ("image", "image/jpeg", "jpg"),
    0x01: ("audio", "audio/wav", "wav"),
    0x02: ("video", "video/mp4", "mp4"),
    0x03: ("text", "text/plain", "txt"),
    0x04: ("other", OCTET_STREAM, "bin"),
}


class TakePhotoBody(BaseModel):
    """Body of a ``take_photo`` command (JT/T 808-2013 section 8.57, 0x8801 camera shoot now).

    ``count`` photos (1..0xFFFE) ``interval_s`` apart from camera ``channel``; ``save`` true
    keeps them on the terminal instead of uploading them at once (we want them uploaded).
    ``resolution`` code: 1 320x240, 2 640x480, 3 800x600, 4 1024x768, 5 176x144, 6 352x288,
    7 704x288, 8 704x576; ``quality`` 1 (best) .. 10; brightness/chroma 0..255,
    contrast/saturation 0..127.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    channel: int = Field(default=1, ge=1, le=255)
    count: int = Field(default=1, ge=1, le=0xFFFE)
    interval_s: int = Field(default=0, ge=0, le=0xFFFF)
    save: bool = False
    resolution: int = Field(default=2, ge=1, le=8)
    quality: int = Field(default=5, ge=1, le=10)
    brightness: int = Field(default=128, ge=0, le=255)
    contrast: int = Field(default=64, ge=0, le=127)
    saturation: int = Field(default=64, ge=0, le=127)
    chroma: int = Field(default=128, ge=0, le=255)


def stored_name(sha256: str, extension: str) -> str:
    """The name a media item is downloaded under: its digest and our extension, never the
    terminal's file name (which may hold ``../`` or NUL)."""
    return f"{sha256}.{extension}"


def extension_for(content_type: str) -> str:
    """File extension of one of our MIME types (``bin`` for anything else)."""
    for table in (MEDIA_FORMATS, JSATL_FILE_TYPES):
        for _name, mime, extension in table.values():
            if mime == content_type:
                return extension
    return "bin"


def build_take_photo(
    terminal_id: str, body: TakePhotoBody, *, expiry_s: float, now: datetime | None = None
) -> Command:
    """A new ``take_photo`` command to ``terminal_id`` expiring ``expiry_s`` seconds from now."""
    created_at = now or datetime.now(UTC)
    return Command(
        command_id=new_command_id(),
        terminal_id=terminal_id,
        name=TAKE_PHOTO,
        body=body.model_dump(),
        created_at=created_at,
        expires_at=created_at + timedelta(seconds=expiry_s),
    )
