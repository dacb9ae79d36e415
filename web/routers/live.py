"""``/ws/live``: the websocket live feed (see :mod:`web.hub` for the message shapes).

Authentication is the same token as the REST API: the ``gpsm_token`` cookie, an
``Authorization: Bearer`` header or ``?token=``. Unauthenticated connections are closed with code
4401 before any data is sent; a cookie-authenticated connection from a page of another origin
(cross-site websocket hijacking) with 4403.

Client -> server messages:
    {"type": "subscribe", "company_id": 3, "vehicle_ids": [1, 2], "bbox": [lon1, lat1, lon2, lat2]}
        narrows the feed (any field may be null = no narrowing) and answers a new snapshot;
        an operator asking for another company gets an error and keeps its old filter.
    {"type": "ping"} -> {"type": "pong"}
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from gps_monitor.db import users
from gps_monitor.service import wait_until_set
from web.deps import is_db_id
from web.hub import ClientOverflow, LiveClient, LiveHub, dumps
from web.live_query import LiveFilter, latest_positions, parse_bbox
from web.security import browser_origin_allowed
from web.validation import DEPTH_EXPECTED

log = logging.getLogger(__name__)
router = APIRouter(tags=["live"])

CLOSE_UNAUTHORIZED = 4401
CLOSE_OVERFLOW = 4008
CLOSE_FORBIDDEN_ORIGIN = 4403


def _narrow(client: LiveClient, message: dict[str, Any]) -> LiveFilter:
    """The filter a subscribe message asks for, within the user's scope.

    Raises:
        ValueError: a malformed field, or an operator naming another company.
    """
    user = client.user
    company_id = message.get("company_id")
    if company_id is not None and not is_db_id(company_id):
        raise ValueError(f"company_id: expected an integer or null, got {company_id!r}")
    if not user.sees_all:
        if company_id is not None and company_id != user.company_id:
            raise ValueError(
                f"company_id: expected {user.company_id} (your company) or null, got {company_id}"
            )
        company_id = user.company_id
    vehicle_ids = message.get("vehicle_ids")
    if vehicle_ids is not None and (
        not isinstance(vehicle_ids, list) or not all(is_db_id(v) for v in vehicle_ids)
    ):
        raise ValueError(f"vehicle_ids: expected a list of integers or null, got {vehicle_ids!r}")
    return LiveFilter(
        company_id=company_id,
        vehicle_ids=frozenset(vehicle_ids) if vehicle_ids is not None else None,
        bbox=parse_bbox(message.get("bbox")),
    )


async def _snapshot(websocket: WebSocket, hub: LiveHub, client: LiveClient) -> None:
    started = time.perf_counter()
    vehicles = await latest_positions(hub.pool, client.filter, hub.settings.web)
    await websocket.send_text(
        dumps(
            {
                "type": "snapshot",
                "vehicles": vehicles,
                "filter": {
                    "company_id": client.filter.company_id,
                    "vehicle_ids": sorted(client.filter.vehicle_ids)
                    if client.filter.vehicle_ids is not None
                    else None,
                    "bbox": client.filter.bbox,
                },
                "server_time": time.time(),
                "query_ms": round((time.perf_counter() - started) * 1000, 1),
            }
        )
    )


@router.websocket("/ws/live")
async def live(websocket: WebSocket) -> None:
    app = websocket.app
    hub: LiveHub = app.state.hub
    settings = app.state.settings
    auth = websocket.headers.get("authorization", "")
    bearer = auth[7:].strip() if auth.lower().startswith("bearer ") else None
    cookie = websocket.cookies.get("gpsm_token")
    token = bearer or cookie or websocket.query_params.get("token")
    user = (
        await users.user_for_token(app.state.pool, token, settings.web.secret_key)
        if token
        else None
    )
    await websocket.accept()
    if (
        user is not None
        and token == cookie
        and browser_origin_allowed(websocket.headers, settings.web.allowed_origins) is not None
    ):
        # a cookie rides along with any page's request: refuse another site's page using it
        await websocket.close(code=CLOSE_FORBIDDEN_ORIGIN, reason="cross-origin")
        return
    if user is None:
        # accepted then closed with a code the page understands (a refused handshake is 1006)
        await websocket.close(code=CLOSE_UNAUTHORIZED, reason="login required")
        return
    assert token is not None  # the user came from it
    client = LiveClient(
        user, websocket.send_text, settings, users.token_digest(token, settings.web.secret_key)
    )
    hub.clients.add(client)  # before the snapshot: nothing published meanwhile is missed
    sender: asyncio.Task[None] | None = None
    try:
        await _snapshot(websocket, hub, client)
        sender = asyncio.create_task(client.run_sender(), name=f"ws-sender-{client.id}")
        receiver = asyncio.create_task(
            _receive(websocket, hub, client), name=f"ws-recv-{client.id}"
        )
        watcher = asyncio.create_task(
            _watch_session(hub, client, token), name=f"ws-session-{client.id}"
        )
        done, pending = await asyncio.wait(
            {sender, receiver, watcher}, return_when=asyncio.FIRST_COMPLETED
        )
        for task in pending:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for task in done:
            error = task.exception()
            if isinstance(error, ClientOverflow | TimeoutError):
                log.warning("closing live client %s (%s): %s", client.id, user.username, error)
                with contextlib.suppress(Exception):
                    await websocket.close(code=CLOSE_OVERFLOW, reason="too slow")
            elif task is watcher and error is None:
                log.info("closing live client %s (%s): session ended", client.id, user.username)
                with contextlib.suppress(Exception):
                    await websocket.close(code=CLOSE_UNAUTHORIZED, reason="session ended")
    except WebSocketDisconnect:
        pass
    finally:
        hub.clients.discard(client)
        if sender is not None and not sender.done():
            sender.cancel()


async def _watch_session(hub: LiveHub, client: LiveClient, token: str) -> None:
    """Return when the socket's login is over: its token revoked by a logout (told by the hub at
    once, from any web process), or found invalid at a check every heartbeat interval (expired,
    password changed, user deactivated)."""
    interval_s = hub.settings.web.heartbeat_interval_s
    while True:
        if await wait_until_set(client.revoked, interval_s):
            return
        user = await users.user_for_token(hub.pool, token, hub.settings.web.secret_key)
        if user is None:
            return


async def _receive(websocket: WebSocket, hub: LiveHub, client: LiveClient) -> None:
    """Read client messages until it disconnects."""
    while True:
        try:
            text = await websocket.receive_text()
        except WebSocketDisconnect:
            return
        try:
            try:
                message = json.loads(text)
            except RecursionError:  # nested deeper than the parser can go: ended the socket
                limit = hub.settings.web.max_json_depth
                raise ValueError(f"message: {DEPTH_EXPECTED.format(limit=limit)}") from None
            if not isinstance(message, dict):
                raise ValueError(f"expected a JSON object, got {type(message).__name__}")
            kind = message.get("type")
            if kind == "ping":
                client.alarms.append({"type": "pong"})
                client.wake.set()
            elif kind == "subscribe":
                client.filter = _narrow(client, message)
                client.pending.clear()
                # the snapshot is sent through the sender's queue, after any alarms already queued
                vehicles = await latest_positions(hub.pool, client.filter, hub.settings.web)
                client.alarms.append(
                    {
                        "type": "snapshot",
                        "vehicles": vehicles,
                        "filter": {
                            "company_id": client.filter.company_id,
                            "vehicle_ids": sorted(client.filter.vehicle_ids)
                            if client.filter.vehicle_ids is not None
                            else None,
                            "bbox": client.filter.bbox,
                        },
                    }
                )
                client.wake.set()
            else:
                raise ValueError(f"type: expected subscribe or ping, got {kind!r}")
        except ValueError as error:  # json.JSONDecodeError is a ValueError
            client.alarms.append({"type": "error", "detail": str(error)})
            client.wake.set()
