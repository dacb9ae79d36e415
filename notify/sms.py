"""SMS through a configurable HTTP SMS gateway.

SMS providers (the 短信 APIs of the cloud vendors, a carrier's own gateway, an in-house relay)
each have their own request format, so the request is configured, not built in:
``POST notify.sms_url`` with ``Content-Type: notify.sms_content_type`` and the body
``notify.sms_body_template`` where ``{phone}`` and ``{text}`` are replaced. With a JSON content
type the values are JSON-escaped (the template ``{"phone": "{phone}", "text": "{text}"}`` stays
valid JSON whatever the text holds); otherwise they are form-encoded
(``mobile={phone}&content={text}``). One request per phone number; any 2xx answer is success.
The text is one line (:meth:`Notification.short_text`), cut at ``notify.sms_max_chars``.

Channel config: ``{"phones": ["13800138000", ...]}``; no secret (gateway credentials belong in
the URL or template, which are settings, not channel data).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import quote_plus

from gps_monitor.config import NotifySettings
from gps_monitor.db.notify import ChannelRecord
from notify.channels import (
    REPLY_MAX_CHARS,
    ChannelError,
    Outcome,
    SendContext,
    phone_numbers,
    post,
    require_url,
)
from notify.message import Notification


def _is_json(settings: NotifySettings) -> bool:
    return "json" in settings.sms_content_type.lower()


def render(settings: NotifySettings, phone: str, text: str) -> str:
    """The request body for one phone number."""
    if _is_json(settings):
        escape = lambda value: json.dumps(value, ensure_ascii=False)[1:-1]  # noqa: E731
    else:
        escape = quote_plus
    return settings.sms_body_template.replace("{phone}", escape(phone)).replace(
        "{text}", escape(text)
    )


def check_settings(settings: NotifySettings) -> None:
    """The SMS gateway settings are usable.

    Raises:
        ChannelError: naming GPS_MONITOR_NOTIFY_SMS_URL or GPS_MONITOR_NOTIFY_SMS_BODY_TEMPLATE.
    """
    if settings.sms_url is None:
        raise ChannelError(
            "GPS_MONITOR_NOTIFY_SMS_URL: expected the SMS gateway URL (an SMS channel exists), "
            "got none"
        )
    require_url(settings.sms_url, "GPS_MONITOR_NOTIFY_SMS_URL")
    template = settings.sms_body_template
    if "{phone}" not in template or "{text}" not in template:
        raise ChannelError(
            "GPS_MONITOR_NOTIFY_SMS_BODY_TEMPLATE: expected both {phone} and {text}, "
            f"got {template!r}"
        )
    if _is_json(settings):
        try:
            json.loads(render(settings, "13800138000", '测试 "引号" \\ 换行\n'))
        except ValueError as error:
            raise ChannelError(
                "GPS_MONITOR_NOTIFY_SMS_BODY_TEMPLATE: expected valid JSON once {phone} and "
                f"{{text}} are filled in (content type {settings.sms_content_type}), got "
                f"{template!r} ({error})"
            ) from None


def validate(config: dict[str, Any], secret: str | None) -> None:
    phone_numbers(config)
    if secret:
        raise ChannelError("secret: expected none for SMS (gateway credentials are settings)")


def target(config: dict[str, Any]) -> str:
    return ",".join(config.get("phones") or [])


async def _one(ctx: SendContext, phone: str, text: str) -> Outcome:
    settings = ctx.settings
    assert settings.sms_url is not None
    body = render(settings, phone, text).encode()
    response = await post(ctx, settings.sms_url, body, settings.sms_content_type)
    if isinstance(response, Outcome):
        return Outcome.failed(f"{phone}: {response.reply}")
    reply = f"{phone}: {response.text[:REPLY_MAX_CHARS]}"
    if 200 <= response.status < 300:
        return Outcome(True, response.status, reply[:REPLY_MAX_CHARS])
    return Outcome.failed(reply, response.status)


async def send(channel: ChannelRecord, note: Notification, ctx: SendContext) -> Outcome:
    text = note.short_text(ctx.zone)[: ctx.settings.sms_max_chars]
    outcomes = await asyncio.gather(*(_one(ctx, p, text) for p in channel.config["phones"]))
    failed = [o for o in outcomes if not o.ok]
    if not failed:
        return (
            outcomes[0]
            if len(outcomes) == 1
            else Outcome(
                True, outcomes[0].reply_code, "; ".join(o.reply for o in outcomes)[:REPLY_MAX_CHARS]
            )
        )
    return Outcome.failed("; ".join(o.reply for o in failed), failed[0].reply_code)
