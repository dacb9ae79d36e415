"""Browser-facing defences of the web app, each in one place for every route.

:class:`OriginCheckMiddleware` (cross-site request forgery): the login cookie rides along with
any page's request to this host, including a page served on another port of the same host
(``SameSite`` treats that as the same site). A state-changing request (POST, PUT, PATCH, DELETE)
that authenticates with the cookie (no ``Authorization: Bearer`` header) must therefore come from
a page of this app's own origin or of ``web.allowed_origins``; else 403. Bearer requests are
exempt: another page cannot attach that header without a CORS grant, which this app never gives.
The websocket uses the same check (:func:`browser_origin_allowed`) for cookie connections.
"""

from __future__ import annotations

import copy
import itertools
import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gps_monitor.config import Settings
from web.basemaps import tile_sources
from web.deps import COOKIE_NAME

STATE_CHANGING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of a URL (lower case), or None for ``null`` or no host."""
    parts = urlsplit(url.strip())
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def browser_origin_allowed(headers: Mapping[str, str], allowed: Iterable[str]) -> str | None:
    """None when the request may act with the user's cookie, else why not (for the 403 text).

    The page that sent it is named by ``Origin`` (every browser sends it on cross-origin and
    state-changing requests), else by ``Referer``; it must be this host (same ``Host`` header,
    port included, any scheme: a TLS proxy in front changes the scheme only) or one of
    ``allowed`` (``scheme://host[:port]``). Without either header, ``Sec-Fetch-Site`` must not
    say ``cross-site`` or ``same-site``; a request with none of the three is not from a browser
    page (e.g. a script holding the cookie) and is let through.
    """
    host = headers.get("host", "").lower()
    allowed_origins = {o.rstrip("/").lower() for o in allowed}
    for name in ("origin", "referer"):
        value = headers.get(name)
        if value is None:
            continue
        origin = _origin_of(value)
        if origin is not None and (origin.split("://", 1)[1] == host or origin in allowed_origins):
            return None
        return (
            f"expected a request from a page of this site ({host}) or of web.allowed_origins, "
            f"got {name} {value!r}"
        )
    fetch_site = headers.get("sec-fetch-site", "").lower()
    if fetch_site in ("cross-site", "same-site"):
        return f"expected a request from a page of this site, got Sec-Fetch-Site {fetch_site}"
    return None


def cookie_authenticated(headers: Mapping[str, str], cookies: Mapping[str, str]) -> bool:
    """True when the login cookie, not a bearer header, would authenticate the request (the
    order of :func:`web.deps.token_from`)."""
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer ") and auth[7:].strip():
        return False
    return bool(cookies.get(COOKIE_NAME))


class OriginCheckMiddleware:
    """ASGI middleware: 403 for a cookie-authenticated POST/PUT/PATCH/DELETE from a page of
    another origin (see :func:`browser_origin_allowed`)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.allowed = tuple(settings.web.allowed_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in STATE_CHANGING_METHODS:
            headers = Headers(scope=scope)
            if cookie_authenticated(headers, cookie_parser(headers.get("cookie", ""))):
                problem = browser_origin_allowed(headers, self.allowed)
                if problem is not None:
                    response = JSONResponse({"detail": f"cross-site request: {problem}"}, 403)
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)


# ------------------------------------------------------------------ response headers

DOCS_PATHS = ("/docs", "/redoc")
DOCS_CDN = "https://cdn.jsdelivr.net"


def content_security_policy(settings: Settings) -> str:
    """The CSP of the app's pages: scripts, styles, fetches and websockets from this origin
    only (no inline script), images also from the offered basemaps' tile hosts
    (:func:`web.basemaps.tile_sources`), never framed. Inline
    ``style`` attributes are allowed (the map's markers and Leaflet set them)."""
    images = " ".join(("'self' data: blob:", *tile_sources(settings.web)))
    return (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        f"img-src {images}; connect-src 'self'; font-src 'self' data:; object-src 'none'; "
        "base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
    )


def docs_security_policy() -> str:
    """The CSP of FastAPI's /docs and /redoc pages, which load Swagger UI / ReDoc from their CDN
    and start it with an inline script."""
    return (
        f"default-src 'self'; script-src 'self' 'unsafe-inline' {DOCS_CDN}; "
        f"style-src 'self' 'unsafe-inline' {DOCS_CDN}; img-src 'self' data: https:; "
        "connect-src 'self'; worker-src 'self' blob:; object-src 'none'; frame-ancestors 'none'"
    )


class SecurityHeadersMiddleware:
    """ASGI middleware adding to every HTTP response: ``Content-Security-Policy``
    (:func:`content_security_policy`), ``X-Content-Type-Options: nosniff``, ``X-Frame-Options:
    DENY``, ``Referrer-Policy: same-origin``, and on HTTPS requests ``Strict-Transport-Security``
    (``web.hsts_max_age_s``, 0: none)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        common = [
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"same-origin"),
        ]
        self._page = [
            (b"content-security-policy", content_security_policy(settings).encode()),
            *common,
        ]
        self._docs = [(b"content-security-policy", docs_security_policy().encode()), *common]
        max_age = settings.web.hsts_max_age_s
        self._hsts = (
            [(b"strict-transport-security", f"max-age={max_age}".encode())] if max_age else []
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        docs = scope["path"].startswith(DOCS_PATHS)
        added = (self._docs if docs else self._page) + (
            self._hsts if scope.get("scheme") == "https" else []
        )

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in added}
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                message = {**message, "headers": headers + added}
            await send(message)

        await self.app(scope, receive, send_with_headers)


# ------------------------------------------------------------------ access log


TOKEN_IN_QUERY = re.compile(r"([?&]token=)[^&\s\"]*")


def redact_tokens(text: str) -> str:
    """``text`` with the value of every ``token=`` query parameter replaced by ``[redacted]``."""
    return TOKEN_IN_QUERY.sub(r"\1[redacted]", text)


class RedactTokenFilter(logging.Filter):
    """Logging filter: no login token from a ``?token=`` query in uvicorn's access lines
    (``"GET /ws/live?token=..."``) or websocket lines; the rest of the line is kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and "token=" in record.msg:
            record.msg = redact_tokens(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact_tokens(a) if isinstance(a, str) and "token=" in a else a for a in record.args
            )
        return True


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's own logging configuration with :class:`RedactTokenFilter` on its handlers."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_token"] = {"()": RedactTokenFilter}
    for handler in config["handlers"].values():
        handler.setdefault("filters", []).append("redact_token")
    return config


# ------------------------------------------------------------------ secret key


def secret_key_problem(key: str) -> str | None:
    """Why ``key`` is not a usable production secret, or None.

    Expected: at least 32 characters, at least 10 distinct ones, not a repeated unit
    (``abcabc…``), not mostly a run of steps (``abcdef…``, ``123456…``), not a known default.
    ``secrets.token_urlsafe(32)`` (43 characters) passes.
    """
    if key.lower() in INSECURE_SECRETS or "change" in key.lower():
        return "the insecure default or a placeholder"
    if len(key) < 32:
        return f"{len(key)} characters"
    if len(set(key)) < 10:
        return f"{len(set(key))} distinct characters"
    for unit in range(1, len(key) // 2 + 1):
        if key == (key[:unit] * (len(key) // unit + 1))[: len(key)]:
            return f"a repetition of {unit} characters"
    steps = [ord(b) - ord(a) for a, b in itertools.pairwise(key)]
    same = sum(1 for s, t in itertools.pairwise(steps) if s == t)
    if same > len(steps) // 2:
        return "a run of evenly spaced characters"
    return None


INSECURE_SECRETS = {"", "dev-insecure-secret-change-me", "secret", "changeme", "change-me"}
