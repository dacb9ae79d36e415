"""Push channels and subscriptions of `gps-monitor notify` (issue 9): every user manages their
own; the bureau manages everyone's, and company-wide rules (no owner). Each change is audited in
the same transaction; a channel's secret is write-only (answers carry ``has_secret``) and never
audited.

Who may touch what is decided in one place, :func:`_may_manage`: the owner, or a bureau user.
Anything else is a 404 (as if it did not exist). An operator's subscriptions only ever concern
their own company (the company filter is forced to it; vehicles of another company are refused),
and the notify service checks that again when routing.

Bad input is a 422 naming the field: unknown channel kind, malformed URL or address, an URL to
a loopback/private/link-local/... IP address not in ``notify.allowed_private_targets`` (server-side
request forgery; names are checked once resolved, at each delivery), missing secret, unknown
alarm type, level outside 1..4, quiet hours not HH:MM or only one of the two.

The delivery log shows the receiver's answer text to the bureau only: anyone else sees the HTTP
status (or SMTP reply code) and ``answer withheld``, so a channel cannot be used to read what a
host answers (errors of our own making, with no answer code, such as a refused target or a
timeout, are shown to everyone).
"""

from __future__ import annotations

from datetime import time
from typing import Annotated, Any, Literal

import asyncpg
from fastapi import APIRouter, HTTPException, Query, status
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field, field_validator

from gps_monitor.alarm_levels import ALARM_TYPES
from gps_monitor.config import NotifySettings
from gps_monitor.db import audit, registry, users
from gps_monitor.db import notify as store
from gps_monitor.db.notify import Subscription
from gps_monitor.db.users import Role, User
from gps_monitor.errors import NotFoundError
from notify.channels import KINDS, ChannelError, TargetPolicy, validate_channel
from web.deps import CurrentUser, DbId, PoolDep, SettingsDep, company_scope, not_found
from web.routers.pages import STATIC_DIR, page

router = APIRouter(prefix="/api/notify", tags=["notify"])
page_router = APIRouter(tags=["notify"])


@page(page_router, "/notify")
async def notify_page() -> FileResponse:
    """The settings page: channels, subscriptions, delivery log (static/notify.js)."""
    return FileResponse(STATIC_DIR / "notify.html", headers={"Cache-Control": "no-cache"})


Event = Literal["opened", "closed"]


def _hhmm(value: str | None) -> str | None:
    if value is None:
        return None
    parts = value.strip().split(":")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise ValueError(f"expected a local time HH:MM, got {value!r}")
    hour, minute = int(parts[0]), int(parts[1])
    if hour > 23 or minute > 59:
        raise ValueError(f"expected a local time within 00:00-23:59, got {value!r}")
    return f"{hour:02d}:{minute:02d}"


class ChannelIn(BaseModel):
    name: str = Field(min_length=1, max_length=100, examples=["车队安全群"])
    kind: str = Field(description=f"one of {', '.join(KINDS)}", examples=["dingtalk"])
    config: dict[str, Any] = Field(
        description="url (robots, webhook), to (e-mail addresses) or phones (SMS)",
        examples=[{"url": "https://oapi.dingtalk.com/robot/send?access_token=..."}],
    )
    secret: str | None = Field(
        default=None, max_length=500, description="signing secret (钉钉, 飞书, webhook)"
    )
    enabled: bool = True
    user_id: DbId | None = Field(
        default=None,
        description="owner; default the caller. Bureau only: another user, or "
        "company_wide=true for no owner.",
    )
    company_wide: bool = Field(default=False, description="bureau only: a channel with no owner")


class ChannelPatch(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=100)
    config: dict[str, Any] | None = None
    secret: str | None = Field(
        default=None, max_length=500, description="omit to keep the stored one; null removes it"
    )
    enabled: bool | None = None


class SubscriptionIn(BaseModel):
    channel_id: DbId
    alarm_types: list[str] | None = Field(default=None, description="null: every type")
    vehicle_ids: list[DbId] | None = Field(default=None, description="null: every vehicle")
    company_id: DbId | None = Field(
        default=None, description="alarms of this company only (operators: always their own)"
    )
    min_level: int = Field(default=4, ge=1, le=4, description="1 紧急 .. 4 提示; this or worse")
    events: list[Event] = Field(default=["opened", "closed"], min_length=1)
    quiet_start_local: str | None = Field(default=None, examples=["22:00"])
    quiet_end_local: str | None = Field(default=None, examples=["07:00"])
    enabled: bool = True

    @field_validator("alarm_types")
    @classmethod
    def _known_types(cls, value: list[str] | None) -> list[str] | None:
        for alarm_type in value or ():
            if alarm_type not in ALARM_TYPES:
                raise ValueError(
                    f"expected alarm types among {', '.join(ALARM_TYPES)}, got {alarm_type!r}"
                )
        return value

    @field_validator("quiet_start_local", "quiet_end_local")
    @classmethod
    def _time_of_day(cls, value: str | None) -> str | None:
        return _hhmm(value)


# --- scope, in one place -------------------------------------------------------------------


def _may_manage(user: User, owner_id: int | None) -> bool:
    """The owner manages their own; the bureau manages everyone's and the ownerless."""
    return user.role is Role.BUREAU or (owner_id is not None and owner_id == user.id)


async def _owner_for(conn: asyncpg.Connection, user: User, body: ChannelIn) -> User | None:
    """The owner a new channel gets (None: company-wide).

    Raises:
        HTTPException 403: a non-bureau user asking for another owner or a company-wide one;
            404: an unknown user id.
    """
    if body.company_wide or (body.user_id is not None and body.user_id != user.id):
        if user.role is not Role.BUREAU:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"expected role bureau to manage another user's channels, got {user.role}",
            )
        if body.company_wide:
            return None
        assert body.user_id is not None  # not company-wide: another user's channel
        try:
            return await users.user_by_id(conn, body.user_id)
        except NotFoundError as error:
            raise not_found(f"user {body.user_id}") from error
    return user


def _checked(
    kind: str, config: dict[str, Any], secret: str | None, settings: NotifySettings
) -> str:
    try:
        return validate_channel(kind, config, secret, None, TargetPolicy.of(settings))
    except ChannelError as error:
        raise HTTPException(422, str(error)) from None


async def _channel(conn: asyncpg.Connection | asyncpg.Pool, user: User, channel_id: int) -> Any:
    try:
        channel = await store.get_channel(conn, channel_id)
    except NotFoundError as error:
        raise not_found(f"notify channel {channel_id}") from error
    if not _may_manage(user, channel.user_id):
        raise not_found(f"notify channel {channel_id}")
    return channel


async def _subscription(
    conn: asyncpg.Connection | asyncpg.Pool, user: User, subscription_id: int
) -> Subscription:
    try:
        sub = await store.get_subscription(conn, subscription_id)
    except NotFoundError as error:
        raise not_found(f"notify subscription {subscription_id}") from error
    if not _may_manage(user, sub.user_id):
        raise not_found(f"notify subscription {subscription_id}")
    return sub


# --- channels ------------------------------------------------------------------------------


@router.get("/channels")
async def list_channels(user: CurrentUser, pool: PoolDep) -> list[dict[str, Any]]:
    """The caller's channels (the bureau: every channel)."""
    return await store.list_channels(pool, user_id=None if user.role is Role.BUREAU else user.id)


@router.post("/channels", status_code=201)
async def create_channel(
    body: ChannelIn, user: CurrentUser, pool: PoolDep, settings: SettingsDep
) -> dict[str, Any]:
    target = _checked(body.kind, body.config, body.secret, settings.notify)
    async with pool.acquire() as conn, conn.transaction():
        owner = await _owner_for(conn, user, body)
        channel = await store.create_channel(
            conn,
            name=body.name,
            kind=body.kind,
            config=body.config,
            secret=body.secret,
            user_id=owner.id if owner else None,
            company_id=owner.company_id if owner else None,
            enabled=body.enabled,
        )
        await audit.record(
            conn,
            user,
            "notify_channel.create",
            "notify_channel",
            channel["id"],
            company_id=channel["company_id"],
            details={"name": body.name, "kind": body.kind, "target": target,
                     "user_id": channel["user_id"]},
        )  # fmt: skip
    return channel


@router.put("/channels/{channel_id}")
async def update_channel(
    channel_id: DbId, body: ChannelPatch, user: CurrentUser, pool: PoolDep, settings: SettingsDep
) -> dict[str, Any]:
    async with pool.acquire() as conn, conn.transaction():
        channel = await _channel(conn, user, channel_id)
        config = body.config if body.config is not None else channel.config
        if "secret" in body.model_fields_set:
            secret = body.secret
        else:
            secret = await store.channel_secret(conn, channel_id)
        target = _checked(channel.kind, config, secret, settings.notify)
        updated = await store.update_channel(
            conn,
            channel_id,
            name=body.name or channel.name,
            config=config,
            secret=secret,
            enabled=channel.enabled if body.enabled is None else body.enabled,
        )
        await audit.record(
            conn,
            user,
            "notify_channel.update",
            "notify_channel",
            channel_id,
            company_id=channel.company_id,
            details={"name": updated["name"], "target": target, "enabled": updated["enabled"],
                     "secret_changed": "secret" in body.model_fields_set},
        )  # fmt: skip
    return updated


@router.delete("/channels/{channel_id}", status_code=204)
async def delete_channel(channel_id: DbId, user: CurrentUser, pool: PoolDep) -> None:
    async with pool.acquire() as conn, conn.transaction():
        channel = await _channel(conn, user, channel_id)
        await store.delete_channel(conn, channel_id)
        await audit.record(
            conn,
            user,
            "notify_channel.delete",
            "notify_channel",
            channel_id,
            company_id=channel.company_id,
            details={"name": channel.name, "kind": channel.kind},
        )


# --- subscriptions -------------------------------------------------------------------------


@router.get("/subscriptions")
async def list_subscriptions(user: CurrentUser, pool: PoolDep) -> list[dict[str, Any]]:
    """The caller's subscriptions (the bureau: every subscription)."""
    subs = await store.list_subscriptions(
        pool, user_id=None if user.role is Role.BUREAU else user.id
    )
    return [s.to_dict() for s in subs]


async def _subscription_from(
    conn: asyncpg.Connection, user: User, body: SubscriptionIn, subscription_id: int
) -> Subscription:
    """The subscription ``body`` describes, owned like its channel, scoped to the owner's
    company when the owner is an operator.

    Raises:
        HTTPException 404 (channel not the caller's), 403 (operator: another company), 422
            (quiet hours half given, vehicles of another company).
    """
    channel = await _channel(conn, user, body.channel_id)
    if (body.quiet_start_local is None) != (body.quiet_end_local is None):
        raise HTTPException(
            422, "quiet_start_local, quiet_end_local: expected both or neither, got one"
        )
    owner_company = None
    if channel.user_id is not None:
        try:
            owner_company = (await users.user_by_id(conn, channel.user_id)).company_id
        except NotFoundError:
            owner_company = None
    company_id = body.company_id
    if owner_company is not None:
        operator = User(channel.user_id, "", Role.OPERATOR, owner_company)
        company_id = company_scope(operator, body.company_id)
    if body.vehicle_ids and company_id is not None:
        foreign = await registry.vehicles_of_other_companies(conn, body.vehicle_ids, company_id)
        if foreign:
            raise HTTPException(
                422, f"vehicle_ids: expected vehicles of company {company_id}, got {foreign}"
            )
    return Subscription(
        id=subscription_id,
        channel_id=body.channel_id,
        user_id=channel.user_id,
        company_id=company_id,
        alarm_types=frozenset(body.alarm_types) if body.alarm_types is not None else None,
        vehicle_ids=frozenset(body.vehicle_ids) if body.vehicle_ids is not None else None,
        min_level=body.min_level,
        events=frozenset(body.events),
        quiet_start_local=time.fromisoformat(body.quiet_start_local)
        if body.quiet_start_local
        else None,
        quiet_end_local=time.fromisoformat(body.quiet_end_local) if body.quiet_end_local else None,
        enabled=body.enabled,
    )


@router.post("/subscriptions", status_code=201)
async def create_subscription(
    body: SubscriptionIn, user: CurrentUser, pool: PoolDep
) -> dict[str, Any]:
    async with pool.acquire() as conn, conn.transaction():
        sub = await _subscription_from(conn, user, body, 0)
        new_id = await store.save_subscription(conn, sub)
        saved = await store.get_subscription(conn, new_id)
        await audit.record(
            conn,
            user,
            "notify_subscription.create",
            "notify_subscription",
            new_id,
            company_id=saved.company_id,
            details=saved.to_dict(),
        )
    return saved.to_dict()


@router.put("/subscriptions/{subscription_id}")
async def update_subscription(
    subscription_id: DbId, body: SubscriptionIn, user: CurrentUser, pool: PoolDep
) -> dict[str, Any]:
    async with pool.acquire() as conn, conn.transaction():
        await _subscription(conn, user, subscription_id)
        sub = await _subscription_from(conn, user, body, subscription_id)
        await store.save_subscription(conn, sub)
        saved = await store.get_subscription(conn, subscription_id)
        await audit.record(
            conn,
            user,
            "notify_subscription.update",
            "notify_subscription",
            subscription_id,
            company_id=saved.company_id,
            details=saved.to_dict(),
        )
    return saved.to_dict()


@router.delete("/subscriptions/{subscription_id}", status_code=204)
async def delete_subscription(subscription_id: DbId, user: CurrentUser, pool: PoolDep) -> None:
    async with pool.acquire() as conn, conn.transaction():
        sub = await _subscription(conn, user, subscription_id)
        await store.delete_subscription(conn, subscription_id)
        await audit.record(
            conn,
            user,
            "notify_subscription.delete",
            "notify_subscription",
            subscription_id,
            company_id=sub.company_id,
            details=sub.to_dict(),
        )


# --- delivery log --------------------------------------------------------------------------


@router.get("/deliveries")
async def list_deliveries(
    user: CurrentUser,
    pool: PoolDep,
    channel_id: DbId | None = None,
    alarm_id: DbId | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """The delivery log of the caller's channels (the bureau: all), newest first, each with
    its attempts (time, outcome, HTTP status or SMTP reply code, answer; the answer text to the
    bureau only, see the module docstring)."""
    if channel_id is not None:
        await _channel(pool, user, channel_id)
    rows = await store.list_deliveries(
        pool,
        user_id=None if user.role is Role.BUREAU else user.id,
        channel_id=channel_id,
        alarm_id=alarm_id,
        limit=limit,
    )
    if user.role is not Role.BUREAU:
        for row in rows:
            row["last_reply"] = _withheld(row["last_reply_code"], row["last_reply"])
            for attempt in row["attempt_log"]:
                attempt["reply"] = _withheld(attempt["reply_code"], attempt["reply"])
    return rows


def _withheld(reply_code: int | None, reply: str | None) -> str | None:
    """A receiver's answer (it came with a code) replaced by ``answer withheld (<code>)``; our
    own error texts (no code: refused target, timeout, connection error) are kept."""
    if reply_code is None:
        return reply
    return f"answer withheld ({reply_code})"
