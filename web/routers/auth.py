"""Login, logout and who-am-I. Login answers a bearer token and sets it as an HttpOnly cookie."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response, status
from pydantic import BaseModel, Field

from gps_monitor.db import registry, users
from web.deps import COOKIE_NAME, CurrentUser, PoolDep, SettingsDep, token_from
from web.login_throttle import LoginThrottle

router = APIRouter(prefix="/api/auth", tags=["auth"])


class LoginIn(BaseModel):
    username: str = Field(min_length=1)
    password: str = Field(min_length=1)


@router.post("/login")
async def login(
    body: LoginIn, request: Request, response: Response, pool: PoolDep, settings: SettingsDep
) -> dict[str, Any]:
    """Check the password (argon2, in a worker thread); answer
    ``{token, token_type, expires_at, user}`` and set the cookie.

    401 when the name or the password is wrong (the answer, and the work done, do not say
    which); 429 with ``Retry-After`` (seconds) when the name or the client address made too many
    attempts (:mod:`web.login_throttle`).
    """
    throttle: LoginThrottle = request.app.state.login_throttle
    address = request.client.host if request.client is not None else "unknown"
    retry_after_s = throttle.attempt(body.username, address)
    if retry_after_s is not None:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"too many login attempts for this account or from this address: expected at most "
            f"{settings.web.login_account_attempts} per account and "
            f"{settings.web.login_address_attempts} per address in "
            f"{settings.web.login_window_s:g} s; try again in {retry_after_s} s",
            headers={"Retry-After": str(retry_after_s)},
        )
    user = await users.authenticate(
        pool, body.username, body.password, limiter=request.app.state.login_limiter
    )
    if user is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong username or password")
    throttle.succeeded(body.username)
    token, expires_at = await users.issue_token(
        pool, user, settings.web.secret_key, settings.web.token_lifetime_s
    )
    response.set_cookie(
        COOKIE_NAME,
        token,
        max_age=settings.web.token_lifetime_s,
        httponly=True,
        samesite="strict",
        secure=settings.web.cookie_secure or settings.environment == "production",
        path="/",
    )
    return {
        "token": token,
        "token_type": "bearer",
        "expires_at": expires_at.isoformat(),
        "user": user.to_dict(),
    }


@router.post("/logout", status_code=204)
async def logout(
    request: Request, response: Response, user: CurrentUser, pool: PoolDep, settings: SettingsDep
) -> None:
    """Revoke the token the request was made with, close the websockets opened with it and
    clear the cookie."""
    token = token_from(request.headers, request.cookies, None)
    if token:
        await users.revoke_token(pool, token, settings.web.secret_key)
        # its open websockets end too, in every web process
        await request.app.state.hub.announce_revocation(
            users.token_digest(token, settings.web.secret_key)
        )
    response.delete_cookie(COOKIE_NAME, path="/")


@router.get("/session")
async def session(request: Request, pool: PoolDep, settings: SettingsDep) -> dict[str, Any]:
    """``{"user": {...}}`` when the request carries a valid token, else ``{"user": null}``
    (lets the page decide whether to show the login form without provoking a 401)."""
    token = token_from(request.headers, request.cookies, None)
    user = await users.user_for_token(pool, token, settings.web.secret_key) if token else None
    return {"user": user.to_dict() if user else None}


@router.get("/me")
async def me(user: CurrentUser, pool: PoolDep) -> dict[str, Any]:
    """The logged-in user, with its company name for operators."""
    out = user.to_dict()
    out["company_name"] = (
        await registry.company_name(pool, user.company_id) if user.company_id is not None else None
    )
    return out
