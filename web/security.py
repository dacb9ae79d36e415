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

from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from gps_monitor.config import Settings
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
