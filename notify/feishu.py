"""飞书 custom bot (自定义机器人) with the 签名校验 security setting.

Format (飞书开放平台 documentation, 自定义机器人使用指南, open.feishu.cn/document/client-docs/
bot-v3/add-custom-bot):

- signature: ``timestamp`` = now in **seconds**; the HMAC-SHA256 *key* is
  ``timestamp + "\\n" + secret`` and the message is empty; ``sign = base64(digest)``. Both go in
  the body (not the URL); the bot refuses a timestamp more than one hour away from its clock.
- body: ``{"timestamp": "T", "sign": "S", "msg_type": "text", "content": {"text": "..."}}``,
  ``Content-Type: application/json``, at most 20 KB.
- answer: ``{"code": 0, "msg": "success", ...}`` (older bots also ``"StatusCode": 0``); e.g.
  19021 for a bad signature, 9499 for a malformed body.

Channel config: ``{"url": "https://open.feishu.cn/open-apis/bot/v2/hook/..."}``; ``secret``:
the key shown when 签名校验 is enabled (required).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

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


def sign(timestamp_s: int, secret: str) -> str:
    """The 签名校验 ``sign`` field for ``timestamp_s``."""
    key = f"{timestamp_s}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


def validate(config: dict[str, Any], secret: str | None) -> None:
    require_url(config.get("url"))
    require_secret(secret)


def target(config: dict[str, Any]) -> str:
    return url_target(config)


def body(note: Notification, ctx: SendContext, secret: str, timestamp_s: int) -> dict[str, Any]:
    return {
        "timestamp": str(timestamp_s),
        "sign": sign(timestamp_s, secret),
        "msg_type": "text",
        "content": {"text": note.text(ctx.zone)},
    }


async def send(channel: ChannelRecord, note: Notification, ctx: SendContext) -> Outcome:
    payload = body(note, ctx, channel.secret or "", int(time.time()))
    response = await post_json(ctx, channel.config["url"], payload)
    if isinstance(response, Outcome):
        return response
    return robot_outcome(response, ("code", "StatusCode"))
