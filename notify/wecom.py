"""企业微信 group robot (群机器人).

Format (企业微信 developer documentation, 群机器人配置说明, developer.work.weixin.qq.com
document path 91770): ``POST https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=KEY`` with
``Content-Type: application/json`` and the body
``{"msgtype": "markdown", "markdown": {"content": "..."}}``; the content is at most 4096 bytes of
UTF-8 and supports headings, bold, links, quotes and ``<font color="warning">``. The answer is
``{"errcode": 0, "errmsg": "ok"}`` on success. The robot has no signing: the ``key`` in the URL
is the secret (so the delivery log keeps the URL without its query string).

Channel config: ``{"url": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=..."}``; no
``secret``.
"""

from __future__ import annotations

from typing import Any

from gps_monitor.db.notify import ChannelRecord
from notify.channels import (
    ChannelError,
    Outcome,
    SendContext,
    post_json,
    require_url,
    robot_outcome,
    url_target,
)
from notify.message import Notification

MAX_CONTENT_BYTES = 4096


def validate(config: dict[str, Any], secret: str | None) -> None:
    require_url(config.get("url"))
    if secret:
        raise ChannelError(
            "secret: expected none (the 企业微信 robot's key is part of its URL), got one"
        )


def target(config: dict[str, Any]) -> str:
    return url_target(config)


def body(note: Notification, ctx: SendContext) -> dict[str, Any]:
    content = note.markdown(ctx.zone)
    encoded = content.encode()
    if len(encoded) > MAX_CONTENT_BYTES:
        content = encoded[: MAX_CONTENT_BYTES - 3].decode(errors="ignore") + "..."
    return {"msgtype": "markdown", "markdown": {"content": content}}


async def send(channel: ChannelRecord, note: Notification, ctx: SendContext) -> Outcome:
    response = await post_json(ctx, channel.config["url"], body(note, ctx))
    if isinstance(response, Outcome):
        return response
    return robot_outcome(response, ("errcode",))
