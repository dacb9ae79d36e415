"""Photo and video evidence: ask a terminal for a photo (拍照核实), list an alarm's or a vehicle's
media, download one item.

Scope: bureau users see every company's media, operators their own company's (another company's
item or alarm answers 404, as a missing one does); media of a terminal no vehicle carries is the
bureau's only. Downloads are served under our own name (``{sha256}.{ext}``), never the name a
terminal sent, with the stored digest in ``X-Content-SHA256``; a file that no longer hashes to
its digest answers 409 instead of serving altered evidence.
"""

from __future__ import annotations

from typing import Annotated, Any

import anyio
from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from gps_monitor.commands import CommandError, checked_expiry_s
from gps_monitor.db import audit
from gps_monitor.db import commands as commands_db
from gps_monitor.db import media as media_db
from gps_monitor.media import TakePhotoBody, build_take_photo, extension_for, stored_name
from gps_monitor.media_store import MediaStore
from web.deps import CurrentUser, DbId, HandlerUser, PoolDep, SettingsDep, company_scope, not_found
from web.routers.commands import target_vehicle

router = APIRouter(prefix="/api/media", tags=["media"])


class TakePhotoIn(BaseModel):
    """A photo from a vehicle's camera: about an alarm (the photo is linked to it) or a vehicle."""

    model_config = ConfigDict(extra="forbid")

    alarm_id: DbId | None = None
    vehicle_id: DbId | None = None
    body: TakePhotoBody = Field(default_factory=TakePhotoBody)
    expires_in_s: float | None = Field(default=None, description="Default commands.expiry_s")

    @model_validator(mode="after")
    def _one_target(self) -> TakePhotoIn:
        if (self.alarm_id is None) == (self.vehicle_id is None):
            raise ValueError("expected exactly one of alarm_id or vehicle_id")
        return self


@router.post("/take-photo", status_code=201)
async def take_photo(
    request: TakePhotoIn, user: HandlerUser, pool: PoolDep, settings: SettingsDep
) -> dict[str, Any]:
    """Queue a ``take_photo`` command (JT/T 808 0x8801) for the vehicle's terminal; the photo it
    uploads is linked to the alarm. Returns the command row (follow it at /api/commands/{id})."""
    c = settings.commands
    try:
        expiry_s = checked_expiry_s(request.expires_in_s or c.expiry_s, c.min_expiry_s,
                                    c.max_expiry_s)  # fmt: skip
    except CommandError as error:
        raise HTTPException(422, str(error)) from None
    scope = company_scope(user)
    async with pool.acquire() as conn, conn.transaction():
        if request.alarm_id is not None:
            vehicle = await media_db.alarm_vehicle(conn, request.alarm_id, scope)
            if vehicle is None:
                raise not_found(f"alarm {request.alarm_id}")
            if not vehicle["terminal_id"]:
                raise not_found(f"alarm {request.alarm_id}: terminal")
        else:
            vehicle = await target_vehicle(conn, user, vehicle_id=request.vehicle_id)
        command = build_take_photo(vehicle["terminal_id"], request.body, expiry_s=expiry_s)
        row = await commands_db.create(
            conn, command, vehicle_id=vehicle["id"], company_id=vehicle["company_id"],
            alarm_id=request.alarm_id, created_by=user.id,
        )  # fmt: skip
        await audit.record(
            conn, user, "command.create", "command", row["id"], company_id=vehicle["company_id"],
            details={"name": command.name, "body": command.body, "alarm_id": request.alarm_id},
        )  # fmt: skip
        return row


@router.get("")
async def list_media(
    user: CurrentUser,
    pool: PoolDep,
    alarm_id: DbId | None = None,
    vehicle_id: DbId | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[dict[str, Any]]:
    """Media items newest first, of one alarm (linked to it or carrying its alarm number) or
    one vehicle, with their SHA-256 and completeness."""
    return await media_db.listing(
        pool, company_scope(user), alarm_id=alarm_id, vehicle_id=vehicle_id, limit=limit
    )


@router.get("/{media_id}")
async def get_media(media_id: DbId, user: CurrentUser, pool: PoolDep) -> dict[str, Any]:
    """One media item's metadata."""
    row = await media_db.get(pool, media_id, company_scope(user))
    if row is None:
        raise not_found(f"media {media_id}")
    return row


@router.get("/{media_id}/content")
async def media_content(
    media_id: DbId, user: CurrentUser, pool: PoolDep, settings: SettingsDep
) -> FileResponse:
    """The item's bytes (its ``content_type``), checked against its digest first."""
    row = await media_db.get(pool, media_id, company_scope(user))
    if row is None or row["sha256"] is None:
        raise not_found(f"media {media_id}" + ("" if row is None else ": content"))
    store = MediaStore(settings.media.directory)
    sha256 = row["sha256"]
    try:
        intact = await anyio.to_thread.run_sync(store.verify, sha256)
    except FileNotFoundError:
        raise not_found(f"media {media_id}: stored file") from None
    if not intact:
        raise HTTPException(409, f"media {media_id}: the stored file no longer hashes to {sha256}")
    name = stored_name(sha256, extension_for(row["content_type"]))
    return FileResponse(
        store.path(sha256),
        media_type=row["content_type"],
        filename=name,
        content_disposition_type="inline",
        headers={"X-Content-SHA256": sha256, "Cache-Control": "private, max-age=86400"},
    )
