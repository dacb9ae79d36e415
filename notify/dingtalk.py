"""钉钉 custom robot (自定义机器人) with the 加签 security setting.

Format (钉钉 open platform documentation, 自定义机器人发送群消息 / 自定义机器人安全设置,
open.dingtalk.com/document/robots/customize-robot-security-settings):

- signature: ``timestamp`` = now in **milliseconds**; ``string_to_sign = timestamp + "\\n" +
  secret``; ``sign = urlEncode(base64(HmacSHA256(key=secret, message=string_to_sign)))``; both
  are appended to the webhook URL: ``...robot/send?access_token=XXX&timestamp=T&sign=S``. The
  robot refuses a timestamp more than one hour away from its clock.
- body: ``{"msgtype": "markdown", "markdown": {"title": "...", "text": "..."}}`` (the title is
  what the conversation list shows), ``Content-Type: application/json``, UTF-8.
- answer: ``{"errcode": 0, "errmsg": "ok"}`` on success; e.g. 310000 for a bad signature.
  A robot accepts at most 20 messages a minute.

Channel config: ``{"url": "https://oapi.dingtalk.com/robot/send?access_token=..."}``;
``secret``: the ``SEC...`` string shown when 加签 is enabled (required).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any
from urllib.parse import quote_plus

import yarl

from gps_monitor.db.notify import ChannelRecord
from notify.channels import (
    Outcome,
    SendContext,
    post_json,
    require_secret,
    require_url,
    robot_outcome,
    url_target,
)
from notify.message import Notification


def sign(timestamp_ms: int, secret: str) -> str:
    """The 加签 ``sign`` parameter (already URL-encoded) for ``timestamp_ms``."""
    string_to_sign = f"{timestamp_ms}\n{secret}".encode()
    digest = hmac.new(secret.encode(), string_to_sign, hashlib.sha256).digest()
    return quote_plus(base64.b64encode(digest).decode())


def signed_url(url: str, secret: str, timestamp_ms: int) -> str:
    """``url`` with ``&timestamp=...&sign=...`` appended."""
    separator = "&" if yarl.URL(url).query_string else "?"
    return f"{url}{separator}timestamp={timestamp_ms}&sign={sign(timestamp_ms, secret)}"


def validate(config: dict[str, Any], secret: str | None) -> None:
    require_url(config.get("url"))
    require_secret(secret)


def target(config: dict[str, Any]) -> str:
    return url_target(config)


def body(note: Notification, ctx: SendContext) -> dict[str, Any]:
    return {
        "msgtype": "markdown",
        "markdown": {"title": note.title(), "text": note.markdown(ctx.zone)},
    }


async def send(channel: ChannelRecord, note: Notification, ctx: SendContext) -> Outcome:
    url = signed_url(channel.config["url"], channel.secret or "", int(time.time() * 1000))
    response = await post_json(ctx, url, body(note, ctx))
    if isinstance(response, Outcome):
        return response
    return robot_outcome(response, ("errcode",))
