"""A real HTTP receiver on localhost for the notify tests and benchmark: it plays a 企业微信
robot, a 钉钉 robot, a 飞书 bot, a generic webhook receiver and an SMS gateway, checking each
request the way the service's public documentation says the real one does (signatures
recomputed here from the documented algorithm, not with the code under test), and it can be told
to answer 500, hang or answer garbage per path.

Paths: ``/wecom/{name}``, ``/dingtalk/{name}``, ``/feishu/{name}``, ``/webhook/{name}``,
``/sms/{name}``. ``receiver.mode[name]`` is ``ok`` (default), ``500``, ``hang``, ``garbage`` or
``fail:N`` (500 for the first N requests, then ok).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

SECRETS = {
    "dingtalk": "SECtest-dingtalk-secret-0123456789",
    "feishu": "feishu-test-secret-abcdef",
    "webhook": "webhook-test-secret-xyz",
}


@dataclass
class Received:
    kind: str
    name: str
    at: float
    headers: dict[str, str]
    query: dict[str, str]
    body: Any
    verdict: str  # ok or why the request was refused


@dataclass
class Receiver:
    mode: dict[str, str] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    base_url: str = ""
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)  # ends every hang

    def url(self, kind: str, name: str, query: str = "") -> str:
        return f"{self.base_url}/{kind}/{name}" + (f"?{query}" if query else "")

    def of(self, name: str, verdict: str | None = "ok") -> list[Received]:
        return [r for r in self.received if r.name == name and verdict in (None, r.verdict)]

    async def wait_for(self, name: str, count: int, timeout_s: float = 20.0) -> list[Received]:
        """Wait until ``count`` requests to ``name`` were answered (any verdict)."""
        deadline = time.monotonic() + timeout_s
        while len(self.of(name, None)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{name}: expected {count} requests within {timeout_s} s, got "
                    f"{len(self.of(name, None))}"
                )
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), 0.2)
        return self.of(name, None)


def _dingtalk_verdict(request: Request, body: Any) -> str:
    """钉钉 加签: timestamp (ms) within an hour, sign = base64(HmacSHA256(secret,
    timestamp + "\\n" + secret)) (URL-decoded by the query parser); markdown body."""
    timestamp, sign = request.query_params.get("timestamp"), request.query_params.get("sign")
    if not timestamp or not sign or "access_token" not in request.query_params:
        return "missing access_token, timestamp or sign"
    if abs(int(timestamp) - time.time() * 1000) > 3600_000:
        return "timestamp too far"
    secret = SECRETS["dingtalk"]
    expected = base64.b64encode(
        hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256).digest()
    ).decode()
    if not hmac.compare_digest(expected, sign):
        return "sign not match"
    markdown = body.get("markdown") if isinstance(body, dict) else None
    if body.get("msgtype") != "markdown" or not isinstance(markdown, dict):
        return "expected msgtype markdown"
    if not isinstance(markdown.get("title"), str) or not isinstance(markdown.get("text"), str):
        return "expected markdown.title and markdown.text"
    return "ok"


def _feishu_verdict(body: Any) -> str:
    """飞书 签名校验: timestamp (s) within an hour, sign = base64(HmacSHA256(key = timestamp +
    "\\n" + secret, message empty)); text body."""
    if not isinstance(body, dict) or "timestamp" not in body or "sign" not in body:
        return "missing timestamp or sign"
    timestamp = str(body["timestamp"])
    if abs(int(timestamp) - time.time()) > 3600:
        return "timestamp too far"
    key = f"{timestamp}\n{SECRETS['feishu']}".encode()
    expected = base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
    if not hmac.compare_digest(expected, str(body["sign"])):
        return "sign match fail"
    content = body.get("content")
    if body.get("msg_type") != "text" or not isinstance(content, dict):
        return "expected msg_type text"
    return "ok" if isinstance(content.get("text"), str) else "expected content.text"


def _wecom_verdict(body: Any) -> str:
    """企业微信 markdown: {"msgtype": "markdown", "markdown": {"content": <= 4096 bytes}}."""
    if not isinstance(body, dict) or body.get("msgtype") != "markdown":
        return "expected msgtype markdown"
    content = (body.get("markdown") or {}).get("content")
    if not isinstance(content, str) or not content:
        return "expected markdown.content"
    return "ok" if len(content.encode()) <= 4096 else "content over 4096 bytes"


def _webhook_verdict(request: Request, raw: bytes) -> str:
    timestamp = request.headers.get("x-gps-monitor-timestamp", "")
    signature = request.headers.get("x-gps-monitor-signature", "")
    if not timestamp or not request.headers.get("x-gps-monitor-delivery"):
        return "missing timestamp or delivery header"
    digest = hmac.new(
        SECRETS["webhook"].encode(), timestamp.encode() + b"." + raw, hashlib.sha256
    ).hexdigest()
    return "ok" if hmac.compare_digest(f"sha256={digest}", signature) else "bad signature"


def build_app(receiver: Receiver) -> Starlette:
    async def handle(request: Request) -> Response:
        kind, name = request.path_params["kind"], request.path_params["name"]
        raw = await request.body()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw.decode(errors="replace")
        if kind == "dingtalk":
            verdict = _dingtalk_verdict(request, body) if isinstance(body, dict) else "not JSON"
        elif kind == "feishu":
            verdict = _feishu_verdict(body)
        elif kind == "wecom":
            verdict = _wecom_verdict(body)
        elif kind == "webhook":
            verdict = _webhook_verdict(request, raw)
        else:
            verdict = "ok"
        receiver.counts[name] = receiver.counts.get(name, 0) + 1
        mode = receiver.mode.get(name, "ok")
        if mode == "hang":
            await receiver.release.wait()
            return PlainTextResponse("released", status_code=503)
        receiver.received.append(
            Received(
                kind,
                name,
                time.time(),
                dict(request.headers),
                dict(request.query_params),
                body,
                verdict,
            )
        )
        receiver.arrived.set()
        if mode == "500" or (
            mode.startswith("fail:") and receiver.counts[name] <= int(mode.split(":")[1])
        ):
            return PlainTextResponse("internal error", status_code=500)
        if mode == "garbage":
            return PlainTextResponse("<html>\x00\x01 not json", status_code=200)
        if kind in ("wecom", "dingtalk"):
            code = 0 if verdict == "ok" else 310000
            return JSONResponse({"errcode": code, "errmsg": "ok" if code == 0 else verdict})
        if kind == "feishu":
            code = 0 if verdict == "ok" else 19021
            return JSONResponse({"code": code, "msg": "success" if code == 0 else verdict})
        if verdict != "ok":
            return PlainTextResponse(verdict, status_code=401)
        return JSONResponse({"ok": True})

    return Starlette(routes=[Route("/{kind}/{name}", handle, methods=["POST"])])


@contextlib.asynccontextmanager
async def running_receiver() -> AsyncIterator[Receiver]:
    """The receiver on a real uvicorn server on a free localhost port."""
    receiver = Receiver()
    config = uvicorn.Config(
        build_app(receiver), host="127.0.0.1", port=0, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(250):
        if server.started:
            break
        await asyncio.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    receiver.base_url = f"http://127.0.0.1:{port}"
    try:
        yield receiver
    finally:
        receiver.release.set()
        server.should_exit = True
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(task, 5)
