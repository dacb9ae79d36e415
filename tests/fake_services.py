"""Small real HTTP servers standing in for external services in the tests: a tile server (a PNG
at every {z}/{x}/{y}.png) and a 天地图-style reverse geocoder. Each runs on aiohttp on a free
local port and records the requests it got."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class FakeServer:
    base: str = ""
    requests: list[web.Request] = field(default_factory=list)


def tile_png() -> bytes:
    """A 256x256 light-green PNG tile."""
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (256, 256), (200, 230, 200)).save(out, "PNG")
    return out.getvalue()


@contextlib.asynccontextmanager
async def serve(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> AsyncIterator[FakeServer]:
    """``handler`` for every path on http://127.0.0.1:<free port>."""
    server = FakeServer()

    async def record(request: web.Request) -> web.StreamResponse:
        server.requests.append(request)
        return await handler(request)

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", record)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    server.base = f"http://127.0.0.1:{port}"
    try:
        yield server
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def tile_server() -> AsyncIterator[FakeServer]:
    """Serves the same PNG for every tile path."""
    png = tile_png()

    async def tile(_: web.Request) -> web.Response:
        return web.Response(body=png, content_type="image/png")

    async with serve(tile) as server:
        yield server


def tianditu_answer(address: str) -> dict[str, Any]:
    """A reverse geocoding answer in the shape 天地图 documents
    (lbs.tianditu.gov.cn/server/geocoding.html: status "0", result.formatted_address,
    addressComponent, location)."""
    return {
        "result": {
            "formatted_address": address,
            "location": {"lon": 106.55, "lat": 29.56},
            "addressComponent": {
                "address": address,
                "city": "重庆市渝中区",
                "road": "解放碑步行街",
                "poi": "",
                "poi_position": "东",
                "address_position": "东",
                "road_distance": 20,
                "poi_distance": 0,
                "address_distance": 10,
            },
        },
        "msg": "ok",
        "status": "0",
    }


@contextlib.asynccontextmanager
async def geocoder_server(
    answer: Callable[[web.Request], Awaitable[web.StreamResponse]] | None = None,
) -> AsyncIterator[FakeServer]:
    """A fake 天地图 geocoder at <base>/geocoder; default answer: "重庆市渝中区解放碑" + the
    requested lon/lat."""

    async def default(request: web.Request) -> web.Response:
        where = json.loads(request.query["postStr"].replace("'", '"'))
        return web.json_response(
            tianditu_answer(f"重庆市渝中区解放碑 {where['lon']},{where['lat']}")
        )

    async with serve(answer or default) as server:
        yield server


def slow(seconds: float) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A geocoder handler that answers after ``seconds``."""

    async def handler(_: web.Request) -> web.Response:
        await asyncio.sleep(seconds)
        return web.json_response(tianditu_answer("too late"))

    return handler
