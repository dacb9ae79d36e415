"""Input checks at the edge of the web app, for every route at once.

PostgreSQL text cannot hold the NUL character: a ``\\u0000`` in a JSON body, or ``%00`` in a path
or query, would reach asyncpg and fail as a server error; nor can it hold a lone surrogate (a
``\\ud800`` escape in JSON without its other half: not Unicode text, and not encodable as UTF-8,
so not even an error answer could carry it back); nor can JSON columns hold the infinity Python
reads ``1e400`` as. :class:`EdgeCheckMiddleware` answers 422 before any route runs.
:func:`install_error_handlers` maps what still slips through (``asyncpg.DataError``: characters
the database cannot store, values out of a column's range) to 422. Every error answer is a
:class:`SafeJSONResponse`: input echoed in it that plain JSON or UTF-8 cannot carry (``inf``, a
lone surrogate) is sent as text (``"inf"``, ``"\\ud800"``), never a failed answer (a 500 and a
dropped connection).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any
from urllib.parse import parse_qsl

import asyncpg
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.utils import is_body_allowed_for_status_code
from starlette.exceptions import HTTPException
from starlette.middleware.body_limit import MAX_BODY_SIZE_SCOPE_KEY
from starlette.types import ASGIApp, Message, Receive, Scope, Send

NUL = "\x00"


NUL_EXPECTED = "expected text without the NUL character (\\u0000), got one"
SURROGATE_EXPECTED = (
    "expected Unicode text, got a lone surrogate {code} (half of a UTF-16 pair without its other "
    "half)"
)
FINITE_EXPECTED = "expected a finite number, got {value} (out of range or not a number)"


DEFAULT_MAX_JSON_DEPTH = 32
DEPTH_EXPECTED = "expected JSON nested at most {limit} levels deep, got deeper"


SURROGATE = re.compile("[\ud800-\udfff]")  # found in C: a JSON body may hold much text


def text_problem(text: str) -> str | None:
    """What in ``text`` the database cannot store and UTF-8 cannot encode (``expected ..., got
    ...``), or None: the NUL character, or a lone surrogate (U+D800-U+DFFF, which JSON's
    ``\\uXXXX`` escapes can produce)."""
    if NUL in text:
        return NUL_EXPECTED
    if found := SURROGATE.search(text):
        return SURROGATE_EXPECTED.format(code=f"\\u{ord(found.group()):04x}")
    return None


def _json_problem(
    value: Any, where: str, max_depth: int = DEFAULT_MAX_JSON_DEPTH, depth: int = 1
) -> str | None:
    """What in ``value`` (a parsed JSON document) the database cannot store, or None: text
    holding NUL, a number JSON parsing made infinite (``1e400``) or NaN, or arrays/objects
    nested more than ``max_depth`` levels."""
    if isinstance(value, str):
        return f"{where}: {found}" if (found := text_problem(value)) else None
    if isinstance(value, float) and not math.isfinite(value):
        return f"{where}: {FINITE_EXPECTED.format(value=value)}"
    if isinstance(value, dict | list) and depth > max_depth:
        return f"{where}: {DEPTH_EXPECTED.format(limit=max_depth)}"
    if isinstance(value, dict):
        for key, item in value.items():
            if found := text_problem(key):
                return f"{where} (a key): {found}"
            if found := _json_problem(item, f"{where}.{key}", max_depth, depth + 1):
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if found := _json_problem(item, f"{where}[{i}]", max_depth, depth + 1):
                return found
    return None


def is_json(content_type: str) -> bool:
    """Whether FastAPI reads a body of this (lower-case) content type as JSON: a JSON type, or
    none at all."""
    return not content_type or "json" in content_type


def _shown(name: str) -> str:
    return name.replace(NUL, "\\0")


def safe_text(text: str) -> str:
    """``text`` with each lone surrogate written as its escape (``\\ud800``, six characters),
    so UTF-8 can encode it."""
    if not SURROGATE.search(text):
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def problem_in_request(
    path: str,
    query: bytes,
    content_type: str,
    body: bytes,
    max_json_depth: int = DEFAULT_MAX_JSON_DEPTH,
) -> str | None:
    """Why the request cannot be served (``<where>: expected ..., got ...``), or None when its
    path, query and JSON or form body hold nothing the database cannot store and its JSON is
    at most ``max_json_depth`` levels deep."""
    if NUL in path:
        return f"path: {NUL_EXPECTED}"
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if NUL in name or NUL in value:
            return f"query parameter {_shown(name)!r}: {NUL_EXPECTED}"
    if not body:
        return None
    if is_json(content_type):
        try:
            document = json.loads(body)
        except ValueError:
            return None  # the route's own validation answers 422 json_invalid
        except RecursionError:  # nested deeper than the parser can go
            return f"body: {DEPTH_EXPECTED.format(limit=max_json_depth)}"
        return _json_problem(document, "body", max_json_depth)
    if "x-www-form-urlencoded" in content_type:
        for name, value in parse_qsl(body.decode("latin-1"), keep_blank_values=True):
            if NUL in name or NUL in value:
                return f"form field {_shown(name)!r}: {NUL_EXPECTED}"
    return None


class EdgeCheckMiddleware:
    """ASGI middleware: 422 for an HTTP request with NUL in its path, query, JSON or form body,
    a non-finite number in its JSON body, or JSON nested deeper than ``max_json_depth``; a
    websocket with NUL in its path or query is closed with 4422. The body is read through the
    app's body-size limit (``FastAPI(max_body_size=...)``): beyond it, 413."""

    def __init__(self, app: ASGIApp, max_json_depth: int = DEFAULT_MAX_JSON_DEPTH) -> None:
        self.app = app
        self.max_json_depth = max_json_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path = scope["path"]  # already percent-decoded
        query = scope.get("query_string", b"")
        if scope["type"] == "websocket":
            if problem_in_request(path, query, "", b""):
                await send({"type": "websocket.close", "code": 4422})
                return
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        content_type = headers.get(b"content-type", b"").decode("latin-1").lower()
        messages: list[Message] = []
        body = b""
        if is_json(content_type) or "x-www-form-urlencoded" in content_type:
            try:
                while True:
                    message = await receive()
                    messages.append(message)
                    if message["type"] != "http.request":
                        break
                    body += message.get("body", b"")
                    if not message.get("more_body", False):
                        break
            except HTTPException as error:  # 413 from the body-size limit
                limit = scope.get(MAX_BODY_SIZE_SCOPE_KEY)
                response = SafeJSONResponse({"detail": body_limit_detail(limit)}, error.status_code)
                await response(scope, receive, send)
                return
        if problem := problem_in_request(path, query, content_type, body, self.max_json_depth):
            response = SafeJSONResponse({"detail": problem}, status_code=422)
            await response(scope, receive, send)
            return

        async def replay() -> Message:
            if messages:
                return messages.pop(0)
            return await receive()

        await self.app(scope, replay, send)


def body_limit_detail(limit: int | None) -> str:
    """The 413 answer's text."""
    return f"request body: expected at most {limit} bytes, got more"


def json_safe(value: Any) -> Any:
    """``value`` with non-finite floats (``inf``, ``nan``) as strings, lone surrogates in strings
    (keys too) as their escapes (:func:`safe_text`) and bytes as text (what is not UTF-8 as
    ``\\xff`` escapes), so JSON and UTF-8 can carry it."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str):
        return safe_text(value)
    if isinstance(value, bytes):
        return safe_text(value.decode("utf-8", "backslashreplace"))
    if isinstance(value, dict):
        return {json_safe(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


class SafeJSONResponse(JSONResponse):
    """A JSON answer whose content goes through :func:`json_safe` first: the class of every
    error answer, which may echo input back."""

    def render(self, content: Any) -> bytes:
        return super().render(json_safe(content))


def install_error_handlers(app: FastAPI) -> None:
    """422 for request validation errors and for asyncpg data errors; every ``HTTPException``
    answered as FastAPI does, but through :class:`SafeJSONResponse` like the others."""

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        # the input may be bytes (a body not sent as JSON), which jsonable_encoder decodes
        # as UTF-8 or fails: made text first
        return SafeJSONResponse({"detail": jsonable_encoder(json_safe(error.errors()))}, 422)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, error: HTTPException) -> Response:
        if not is_body_allowed_for_status_code(error.status_code):
            return await http_exception_handler(request, error)
        return SafeJSONResponse({"detail": error.detail}, error.status_code, error.headers)

    @app.exception_handler(413)  # the body-size limit, met inside a route
    async def _too_large(request: Request, _: Exception) -> JSONResponse:
        limit = request.scope.get(MAX_BODY_SIZE_SCOPE_KEY)
        return SafeJSONResponse({"detail": body_limit_detail(limit)}, 413)

    @app.exception_handler(asyncpg.DataError)  # and its subclasses: CharacterNotInRepertoire...
    async def _data(_: Request, error: asyncpg.DataError) -> JSONResponse:
        return SafeJSONResponse(
            {"detail": f"expected values the database can store, got: {error}"}, 422
        )
