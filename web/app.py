"""The FastAPI application factory.

``create_app(settings)`` builds the app: a connection pool and the live-feed hub are opened in
the lifespan, every router of :data:`ROUTERS` is included, the static map page is mounted under
``/static``. Another area adds its router with one line in :data:`ROUTERS`.

Errors from the core map to HTTP answers: NotFoundError 404, StateError 409, GeometryError and
UserError 422; each answer's ``detail`` says what was expected and what came. Text with a NUL
character anywhere in a request, and values the database cannot store, are 422 too
(:mod:`web.validation`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import anyio
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from gps_monitor.config import Settings
from gps_monitor.db.pool import create_pool
from gps_monitor.db.registry import RegistryError
from gps_monitor.db.users import UserError
from gps_monitor.errors import ConfigurationError, GeometryError, NotFoundError, StateError
from web.hub import LiveHub
from web.login_throttle import LoginThrottle
from web.routers import (
    alarms,
    auth,
    commands,
    drivers,
    fleet,
    geocode,
    geofences,
    jt809,
    live,
    media,
    notify,
    pages,
    penalties,
    positions,
    registry,
    supervisions,
    terminal_uploads,
    tracks,
    users,
    vehicle_import,
)
from web.routers import reports as reports_router
from web.routers.pages import STATIC_DIR
from web.security import OriginCheckMiddleware, SecurityHeadersMiddleware, secret_key_problem
from web.validation import EdgeCheckMiddleware, SafeJSONResponse, install_error_handlers

ROUTERS: tuple[APIRouter, ...] = (
    auth.router,
    registry.router,
    fleet.router,
    geocode.router,
    positions.router,
    tracks.router,
    alarms.router,
    penalties.router,
    commands.router,
    media.router,
    terminal_uploads.router,
    drivers.router,
    supervisions.router,
    jt809.router,
    geofences.router,
    live.router,
    pages.router,
    reports_router.router,
    notify.router,
    notify.page_router,
    users.router,
    vehicle_import.router,
)


def check_production(settings: Settings) -> None:
    """Refuse insecure defaults outside development.

    Raises:
        ConfigurationError: environment=production with a secret key that is the default, short
            or of low variety (see :func:`web.security.secret_key_problem`).
    """
    if settings.environment != "production":
        return
    problem = secret_key_problem(settings.web.secret_key)
    if problem is not None:
        raise ConfigurationError(
            "web.secret_key (GPS_MONITOR_WEB_SECRET_KEY): expected a random secret in production, "
            "at least 32 characters with 10+ distinct ones, no repeated or evenly spaced run, "
            "e.g. the output of `python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`; "
            f"got {problem}"
        )


def _field_error(field: str, kind: str | None, message: str, status_code: int) -> JSONResponse:
    """A refusal tied to one input field, in the shape of pydantic's 422 list (``loc``, ``type``
    prefixed ``registry_``, ``msg``), so a form shows it next to the field."""
    detail = [{"loc": ["body", field], "type": f"registry_{kind}", "msg": message}]
    return SafeJSONResponse({"detail": detail}, status_code=status_code)


def create_app(
    settings: Settings, *, routers: Sequence[APIRouter] = ROUTERS, live_feed: bool = True
) -> FastAPI:
    """The web app for ``settings``.

    Args:
        routers: the routers to include (default :data:`ROUTERS`).
        live_feed: subscribe to MQTT for the websocket feed (off in pure REST tests).

    Raises:
        ConfigurationError: insecure production settings (see :func:`check_production`).
    """
    check_production(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pool = await create_pool(settings.database)
        app.state.login_limiter = anyio.CapacityLimiter(settings.web.login_hash_threads)
        app.state.hub = LiveHub(settings, app.state.pool)
        if live_feed:
            app.state.hub.start()
        try:
            yield
        finally:
            await app.state.hub.stop()
            await app.state.pool.close()

    app = FastAPI(
        title="gps-monitor",
        description="Live vehicle monitoring: REST API, websocket feed /ws/live, map at /map.",
        version="0.1.0",
        lifespan=lifespan,
        max_body_size=settings.web.max_body_bytes,
    )
    app.state.settings = settings
    app.state.login_throttle = LoginThrottle(settings.web)
    for router in routers:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    # the last added runs first: the origin check before the body is read; the body-size
    # limit (max_body_size) runs before all of them
    app.add_middleware(EdgeCheckMiddleware, max_json_depth=settings.web.max_json_depth)
    app.add_middleware(OriginCheckMiddleware, settings=settings)
    app.add_middleware(SecurityHeadersMiddleware, settings=settings)
    install_error_handlers(app)

    @app.exception_handler(NotFoundError)
    async def _not_found(_: Request, error: NotFoundError) -> JSONResponse:
        return SafeJSONResponse({"detail": str(error)}, status_code=404)

    @app.exception_handler(StateError)
    async def _state(_: Request, error: StateError) -> JSONResponse:
        return SafeJSONResponse({"detail": str(error)}, status_code=409)

    @app.exception_handler(GeometryError)
    async def _geometry(_: Request, error: GeometryError) -> JSONResponse:
        return SafeJSONResponse({"detail": str(error)}, status_code=422)

    @app.exception_handler(UserError)
    async def _user(_: Request, error: UserError) -> JSONResponse:
        if error.field is not None:
            return _field_error(error.field, error.kind, str(error), 422)
        return SafeJSONResponse({"detail": str(error)}, status_code=422)

    @app.exception_handler(RegistryError)
    async def _registry(_: Request, error: RegistryError) -> JSONResponse:
        code = 422 if error.kind == "unknown_company" else 409
        return _field_error(error.field, error.kind, str(error), code)

    return app
