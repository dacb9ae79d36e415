"""FastAPI dependencies: settings, pool, the logged-in user, role checks and company scope.

Authentication: a token from ``POST /api/auth/login``, sent back as ``Authorization: Bearer
<token>`` or as the HttpOnly cookie ``gpsm_token`` (the map page uses the cookie; the websocket
accepts either, or ``?token=``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated

import asyncpg
from annotated_types import Interval
from fastapi import Depends, HTTPException, Request, status

from gps_monitor.config import Settings
from gps_monitor.db import users
from gps_monitor.db.users import Role, User

COOKIE_NAME = "gpsm_token"


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


def get_pool(request: Request) -> asyncpg.Pool:
    return request.app.state.pool


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
PoolDep = Annotated[asyncpg.Pool, Depends(get_pool)]

BIGINT_MIN, BIGINT_MAX = -(2**63), 2**63 - 1
DbId = Annotated[int, Interval(ge=BIGINT_MIN, le=BIGINT_MAX)]
"""An id of a row (PostgreSQL ``bigint``), for path, query and body fields alike: a number out of
that range is a 422 naming the field (``less than or equal to 9223372036854775807``), not a
database error; an unknown id in range stays a 404."""


def is_db_id(value: object) -> bool:
    """Whether ``value`` (from JSON) is an integer :data:`DbId` accepts."""
    return (
        isinstance(value, int)
        and not isinstance(value, bool)
        and (BIGINT_MIN <= value <= BIGINT_MAX)
    )


def token_from(
    headers: Mapping[str, str], cookies: Mapping[str, str], query: str | None
) -> str | None:
    """The login token of a request: bearer header, then cookie, then ``token`` query value."""
    auth = headers.get("authorization")
    if auth and auth.lower().startswith("bearer "):
        return str(auth[7:].strip()) or None
    return cookies.get(COOKIE_NAME) or query or None


async def get_current_user(request: Request, pool: PoolDep, settings: SettingsDep) -> User:
    """The user the request's token belongs to.

    Raises:
        HTTPException 401: no token, or an unknown or expired one.
    """
    token = token_from(request.headers, request.cookies, None)
    user = None
    if token:
        user = await users.user_for_token(pool, token, settings.web.secret_key)
    if user is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "expected a valid login token (Authorization: Bearer or cookie); got "
            + ("an unknown or expired one" if token else "none"),
            headers={"WWW-Authenticate": "Bearer"},
        )
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


def require_roles(*roles: Role) -> Callable[[User], Awaitable[User]]:
    """Dependency factory: 403 unless the current user has one of ``roles``."""

    async def check(user: CurrentUser) -> User:
        if user.role not in roles:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"expected role {' or '.join(str(r) for r in roles)}, got {user.role}",
            )
        return user

    return check


BureauUser = Annotated[User, Depends(require_roles(Role.BUREAU))]
HandlerUser = Annotated[User, Depends(require_roles(Role.BUREAU, Role.OPERATOR))]
EnforcementUser = Annotated[User, Depends(require_roles(Role.ENFORCEMENT))]


def company_scope(user: User, requested: int | None = None) -> int | None:
    """The company a query must be restricted to: None = all companies.

    An operator is always restricted to its own company; asking for another company by filter
    is refused.

    Raises:
        HTTPException 403: an operator filtered by another company's id.
    """
    if user.sees_all:
        return requested
    if requested is not None and requested != user.company_id:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"operator of company {user.company_id}: expected company_id={user.company_id}, "
            f"got {requested}",
        )
    return user.company_id


def not_found(what: str) -> HTTPException:
    """404 for a missing object, or one of a company the user may not see (same answer)."""
    return HTTPException(status.HTTP_404_NOT_FOUND, f"{what}: not found")
