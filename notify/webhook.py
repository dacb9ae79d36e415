"""Generic JSON webhook, signed with HMAC-SHA256.

The request: ``POST <url>``, ``Content-Type: application/json; charset=utf-8``, body
:meth:`notify.message.Notification.to_json` (``event``, ``level``, ``level_name``, ``title``,
``text``, ``plate_number``, ``company_name`` and ``alarm``: the ``alarms/v1`` message as
published). Headers:

- ``X-GPS-Monitor-Timestamp``: Unix time of the attempt, seconds;
- ``X-GPS-Monitor-Signature``: ``sha256=`` + lowercase hex HMAC-SHA256, keyed by the channel's
  secret, of ``timestamp + "." + raw body`` (the ``sha256=<hex>`` header form of GitHub's
  ``X-Hub-Signature-256``, with the timestamp inside the signed text as Stripe-style schemes do,
  so a receiver can refuse replays: compare in constant time, reject old timestamps);
- ``X-GPS-Monitor-Delivery``: the delivery id, the same on every retry of one delivery (a
  receiver drops repeats with it; delivery is at least once).

Any 2xx answer is success, whatever its body.

Channel config: ``{"url": "https://..."}``; ``secret`` required.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

from gps_monitor.db.notify import ChannelRecord
from notify.channels import (
    REPLY_MAX_CHARS,
    Outcome,
    SendContext,
    post_json,
    require_secret,
    require_url,
    url_target,
)
from notify.message import Notification

TIMESTAMP_HEADER = "X-GPS-Monitor-Timestamp"
SIGNATURE_HEADER = "X-GPS-Monitor-Signature"
DELIVERY_HEADER = "X-GPS-Monitor-Delivery"


def signature(secret: str, timestamp_s: int, body: bytes) -> str:
    """``sha256=<hex>`` over ``f"{timestamp_s}." + body``."""
    digest = hmac.new(secret.encode(), f"{timestamp_s}.".encode() + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def validate(config: dict[str, Any], secret: str | None) -> None:
    require_url(config.get("url"))
    require_secret(secret)


def target(config: dict[str, Any]) -> str:
    return url_target(config)


async def send(channel: ChannelRecord, note: Notification, ctx: SendContext) -> Outcome:
    body = json.dumps(note.to_json(ctx.zone), ensure_ascii=False).encode()
    now = int(time.time())
    headers = {
        TIMESTAMP_HEADER: str(now),
        SIGNATURE_HEADER: signature(channel.secret or "", now, body),
        DELIVERY_HEADER: str(ctx.delivery_id),
    }
    response = await post_json(ctx, channel.config["url"], body, headers)
    if isinstance(response, Outcome):
        return response
    text = response.text[:REPLY_MAX_CHARS]
    if 200 <= response.status < 300:
        return Outcome(True, response.status, text)
    return Outcome.failed(text or response.reason, response.status)
