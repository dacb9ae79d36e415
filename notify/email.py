"""E-mail over SMTP (Python's smtplib, run in a worker thread).

Security (``notify.smtp_security``): ``starttls`` (RFC 3207: plain connect, ``STARTTLS``, then
everything encrypted; port 587), ``ssl`` (implicit TLS, RFC 8314; port 465) or ``none`` (a local
relay only). Certificates are verified (system CAs, or ``notify.smtp_ca_file``). ``AUTH`` when
``notify.smtp_username`` is set. The message: ``From: notify.smtp_from``, ``To:`` the channel's
addresses, ``Subject:`` the notification title, a plain-text UTF-8 body
(:meth:`Notification.text`). The outcome's reply code is the server's answer to ``DATA``
(250 = accepted) or to the command that failed.

Channel config: ``{"to": ["safety@example.com", ...]}``; no secret.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from gps_monitor.config import NotifySettings
from gps_monitor.db.notify import ChannelRecord
from notify.channels import (
    REPLY_MAX_CHARS,
    ChannelError,
    Outcome,
    SendContext,
    check_email_address,
    email_addresses,
)
from notify.message import Notification


def check_settings(settings: NotifySettings) -> None:
    """The SMTP settings are usable.

    Raises:
        ChannelError: naming the GPS_MONITOR_NOTIFY_SMTP_* setting at fault.
    """
    if not settings.smtp_host:
        raise ChannelError(
            "GPS_MONITOR_NOTIFY_SMTP_HOST: expected the SMTP server (an e-mail channel exists), "
            "got none"
        )
    check_email_address(settings.smtp_from, "GPS_MONITOR_NOTIFY_SMTP_FROM")
    if settings.smtp_username and not settings.smtp_password:
        raise ChannelError(
            "GPS_MONITOR_NOTIFY_SMTP_PASSWORD: expected a password for SMTP AUTH "
            "(GPS_MONITOR_NOTIFY_SMTP_USERNAME is set), got none"
        )
    if settings.smtp_ca_file:
        try:
            ssl.create_default_context(cafile=settings.smtp_ca_file)
        except (OSError, ssl.SSLError) as error:
            raise ChannelError(
                "GPS_MONITOR_NOTIFY_SMTP_CA_FILE: expected a readable PEM CA file, got "
                f"{settings.smtp_ca_file!r} ({error})"
            ) from None


def validate(config: dict[str, Any], secret: str | None) -> None:
    email_addresses(config)
    if secret:
        raise ChannelError("secret: expected none for e-mail (SMTP credentials are settings)")


def target(config: dict[str, Any]) -> str:
    return ",".join(config.get("to") or [])


def build_message(settings: NotifySettings, to: list[str], subject: str, text: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.smtp_from
    message["To"] = ", ".join(to)
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=(settings.smtp_from or "x@localhost").split("@")[1])
    message.set_content(text)
    return message


def _reply(code: int, text: bytes | str) -> str:
    decoded = text.decode(errors="replace") if isinstance(text, bytes) else text
    return f"{code} {decoded}"[:REPLY_MAX_CHARS]


def deliver(settings: NotifySettings, message: EmailMessage, to: list[str]) -> Outcome:
    """Send ``message`` (blocking; run in a thread)."""
    timeout = settings.send_timeout_s
    context = ssl.create_default_context(cafile=settings.smtp_ca_file)
    host = settings.smtp_host or ""
    try:
        smtp: smtplib.SMTP
        if settings.smtp_security == "ssl":
            smtp = smtplib.SMTP_SSL(host, settings.smtp_port, timeout=timeout, context=context)
        else:
            smtp = smtplib.SMTP(host, settings.smtp_port, timeout=timeout)
        with smtp:
            smtp.ehlo()
            if settings.smtp_security == "starttls":
                smtp.starttls(context=context)
                smtp.ehlo()
            if settings.smtp_username:
                smtp.login(settings.smtp_username, settings.smtp_password or "")
            code, text = smtp.mail(str(settings.smtp_from))
            if code != 250:
                return Outcome.failed(_reply(code, text), code)
            accepted = 0
            refused: list[str] = []
            for address in to:
                code, text = smtp.rcpt(address)
                if code in (250, 251):
                    accepted += 1
                else:
                    refused.append(f"{address}: {_reply(code, text)}")
            if not accepted:
                return Outcome.failed("; ".join(refused), code)
            code, text = smtp.data(message.as_bytes())
            reply = _reply(code, text) + (f"; refused {'; '.join(refused)}" if refused else "")
            return Outcome(code == 250 and not refused, code, reply[:REPLY_MAX_CHARS])
    except smtplib.SMTPResponseException as error:
        return Outcome.failed(_reply(error.smtp_code, error.smtp_error), error.smtp_code)
    except (smtplib.SMTPException, OSError, ssl.SSLError) as error:
        return Outcome.failed(f"{type(error).__name__}: {error}")


async def send(channel: ChannelRecord, note: Notification, ctx: SendContext) -> Outcome:
    to = list(channel.config["to"])
    message = build_message(ctx.settings, to, note.title(), note.text(ctx.zone))
    return await asyncio.to_thread(deliver, ctx.settings, message, to)
