"""Web users (bureau only): list, create, edit (role, company, display name, enabled) and set a
new password; every change audited in the same transaction (never the password itself). SQL in
:mod:`gps_monitor.db.users`.

Disabling a user (``active`` false) or setting its password revokes its login tokens. The bureau
cannot disable or demote itself (409): a county must not lock itself out of its own platform.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel

from gps_monitor.db import audit, users
from gps_monitor.db.users import Role
from gps_monitor.registry_fields import DisplayName, Password, Username
from web.deps import BureauUser, DbId, PoolDep

router = APIRouter(prefix="/api/users", tags=["users"])


class UserIn(BaseModel):
    username: Username
    role: Role
    company_id: DbId | None = None
    display_name: DisplayName | None = None
    password: Password


class UserEdit(BaseModel):
    role: Role
    company_id: DbId | None = None
    display_name: DisplayName | None = None
    active: bool = True


class PasswordIn(BaseModel):
    password: Password


@router.get("")
async def list_users(_: BureauUser, pool: PoolDep) -> list[dict[str, Any]]:
    """Every user with role, company, enabled (``active``) and creation time."""
    return await users.list_users(pool)


@router.post("", status_code=201)
async def create_user(body: UserIn, user: BureauUser, pool: PoolDep) -> dict[str, Any]:
    """Create a user. 422 (on ``username``) when the name is taken, (on ``company_id``) when an
    operator has no company or another role has one."""
    async with pool.acquire() as conn, conn.transaction():
        created = await users.create_user(
            conn, body.username, body.password, body.role, body.company_id, body.display_name
        )
        await audit.record(
            conn,
            user,
            "user.create",
            "user",
            created.id,
            company_id=created.company_id,
            details=body.model_dump(mode="json", exclude={"password"}),
        )
    return created.to_dict()


@router.put("/{user_id}")
async def edit_user(
    user_id: DbId, body: UserEdit, user: BureauUser, pool: PoolDep
) -> dict[str, Any]:
    """Set role, company, display name and enabled; 409 for the bureau's own account when that
    would disable it or take its bureau role."""
    if user_id == user.id and (not body.active or body.role is not Role.BUREAU):
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            "your own account: expected it to stay an enabled bureau user, got "
            f"role {body.role}, active {body.active}",
        )
    async with pool.acquire() as conn, conn.transaction():
        changed = await users.update_user(
            conn,
            user_id,
            role=body.role,
            company_id=body.company_id,
            display_name=body.display_name,
            active=body.active,
        )
        await audit.record(
            conn,
            user,
            "user.update",
            "user",
            user_id,
            company_id=changed.company_id,
            details=body.model_dump(mode="json"),
        )
    return {**changed.to_dict(), "active": body.active}


@router.put("/{user_id}/password", status_code=204)
async def set_password(user_id: DbId, body: PasswordIn, user: BureauUser, pool: PoolDep) -> None:
    """Set a new password (a reset: the user's tokens are revoked). Audited without the
    password."""
    async with pool.acquire() as conn, conn.transaction():
        target = await users.user_by_id(conn, user_id)
        await users.set_password(conn, target.username, body.password)
        await audit.record(
            conn, user, "user.password", "user", user_id, company_id=target.company_id
        )
