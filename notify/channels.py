"""The channel kinds and what every channel module provides.

A channel module (:mod:`notify.wecom`, :mod:`notify.dingtalk`, :mod:`notify.feishu`,
:mod:`notify.webhook`, :mod:`notify.email`, :mod:`notify.sms`) has:

- ``validate(config, secret) -> None``: raises :class:`ChannelError` naming the field
  (``config.url: expected an http:// or https:// URL with a host, got 'htp:/x'``); a kind that
  needs service settings (e-mail, SMS) also has ``check_settings(settings)``;
- ``target(config) -> str``: where it goes, for the delivery log, without secrets (an URL loses
  its query string, where robots carry their access token);
- ``async send(channel, note, ctx) -> Outcome``: one attempt; never raises for a receiver's
  failure (refused, 500, garbage), it returns a failed :class:`Outcome`.

:data:`KINDS` maps each kind to its module. :func:`validate_channel` is what the web API (422)
and the service at start (exit 2) call.

Targets (server-side request forgery): a channel's URL is tenant data, so it may not point into
the internal network. :class:`TargetPolicy` refuses loopback, private, link-local, multicast,
unspecified, reserved and other not globally reachable addresses unless
``notify.allowed_private_targets`` lists their network: an IP literal when the channel is saved
(:func:`validate_channel`), and every address a name resolves to at each delivery
(:class:`GuardedResolver` in the sender's connector, :func:`post` for IP literals, which aiohttp
does not resolve). The connection goes only to a checked address; a refused target is a final
failed attempt (:attr:`Outcome.final`), not retried.
"""

from __future__ import annotations

import importlib
import ipaddress
import re
import socket
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import aiohttp
import yarl
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from gps_monitor.config import NotifySettings
from gps_monitor.db.notify import ChannelRecord
from gps_monitor.errors import ConfigurationError
from notify.message import Notification

KIND_MODULES: dict[str, str] = {
    "wecom": "notify.wecom",
    "dingtalk": "notify.dingtalk",
    "feishu": "notify.feishu",
    "webhook": "notify.webhook",
    "email": "notify.email",
    "sms": "notify.sms",
}
KINDS = tuple(KIND_MODULES)
REPLY_MAX_CHARS = 500


class ChannelError(ConfigurationError):
    """A channel's kind, config or secret is unusable; the message names the field."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """One attempt's result: ``reply_code`` is the HTTP status or the SMTP reply code (None when
    no answer came: refused, timed out), ``reply`` the answer or the error, cut to 500 chars."""

    ok: bool
    reply_code: int | None
    reply: str
    final: bool = False
    """A failure no retry can mend (a refused target): the delivery is marked failed now."""

    @classmethod
    def failed(cls, reply: str, reply_code: int | None = None, *, final: bool = False) -> Outcome:
        return cls(False, reply_code, reply[:REPLY_MAX_CHARS], final)


Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_CLASSES = (
    ("is_loopback", "loopback"),
    ("is_unspecified", "unspecified"),
    ("is_link_local", "link-local"),
    ("is_multicast", "multicast"),
    ("is_private", "private"),
    ("is_reserved", "reserved"),
)
ALLOW_SETTING = "GPS_MONITOR_NOTIFY_ALLOWED_PRIVATE_TARGETS"


class TargetRefused(OSError):
    """A channel's target resolves to an address the :class:`TargetPolicy` refuses."""


@dataclass(frozen=True, slots=True)
class TargetPolicy:
    """Which addresses robot and webhook channels may reach: globally reachable ones, plus
    those inside ``allowed`` (``notify.allowed_private_targets``)."""

    allowed: tuple[Network, ...] = field(default=())

    @classmethod
    def of(cls, settings: NotifySettings | None) -> TargetPolicy:
        """The policy of ``settings``; None: the default (nothing private allowed)."""
        if settings is None:
            return cls()
        return cls(
            tuple(ipaddress.ip_network(n, strict=False) for n in settings.allowed_private_targets)
        )

    def refusal(self, address: Address) -> str | None:
        """Why ``address`` may not be reached (``loopback``, ``private``...), None if it may."""
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address.version == n.version and address in n for n in self.allowed):
            return None
        for attribute, what in _CLASSES:
            if getattr(address, attribute):
                return what
        return None if address.is_global else "not globally reachable"

    def explain(self, host: str, address: Address, why: str) -> str:
        shown = (
            f"{host} is" if host.strip("[]") == str(address) else f"{host} resolves to {address},"
        )
        return (
            f"{shown} a {why} address; expected a public address (or one inside "
            f"{ALLOW_SETTING}, allowed now: {[str(n) for n in self.allowed] or 'none'})"
        )

    def check_literal(self, host: str) -> None:
        """Refuse ``host`` if it is an IP literal the policy refuses (names pass: they are
        checked once resolved, at delivery).

        Raises:
            TargetRefused: naming the address and why.
        """
        try:
            address = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return
        why = self.refusal(address)
        if why is not None:
            raise TargetRefused(self.explain(host, address, why))

    def check_url(self, value: str, name: str = "config.url") -> None:
        """An URL whose host is a refused IP literal.

        Raises:
            ChannelError: naming ``name``.
        """
        host = yarl.URL(value).host or ""
        try:
            self.check_literal(host)
        except TargetRefused as error:
            raise ChannelError(f"{name}: {error}") from None


class GuardedResolver(AbstractResolver):
    """aiohttp resolver that resolves with aiohttp's default and refuses the whole answer if
    any address is refused by ``policy`` (a name mixing a public and an internal address is
    refused, not filtered). aiohttp connects only to addresses a resolver returned, so every
    connection of a guarded session goes to a checked address (IP literals skip resolvers:
    :func:`post` checks those).

    Raises (from :meth:`resolve`):
        TargetRefused: an address is refused; aiohttp wraps it in ClientConnectorError.
    """

    def __init__(self, policy: TargetPolicy) -> None:
        self.policy = policy
        self.inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self.inner.resolve(host, port, family)
        for result in results:
            address = ipaddress.ip_address(result["host"].split("%")[0])
            why = self.policy.refusal(address)
            if why is not None:
                raise TargetRefused(self.policy.explain(host.rstrip("."), address, why))
        return results

    async def close(self) -> None:
        await self.inner.close()


def guarded_connector(policy: TargetPolicy | None, limit: int) -> aiohttp.TCPConnector:
    """A connector of at most ``limit`` connections whose names resolve through
    :class:`GuardedResolver` (None: no guard, for the deployment's own SMS gateway)."""
    if policy is None:
        return aiohttp.TCPConnector(limit=limit)
    return aiohttp.TCPConnector(limit=limit, resolver=GuardedResolver(policy))


@dataclass(frozen=True, slots=True)
class SendContext:
    """What a send needs besides the channel and the notification."""

    http: aiohttp.ClientSession
    settings: NotifySettings
    zone: ZoneInfo
    delivery_id: int
    policy: TargetPolicy | None = None
    """The session's target policy (its connector resolves through it); None: unguarded."""


class ChannelModule(Protocol):
    def validate(self, config: dict[str, Any], secret: str | None) -> None: ...

    def target(self, config: dict[str, Any]) -> str: ...

    async def send(
        self, channel: ChannelRecord, note: Notification, ctx: SendContext
    ) -> Outcome: ...


def module_for(kind: str) -> ModuleType:
    """The module of ``kind``.

    Raises:
        ChannelError: an unknown kind.
    """
    if kind not in KIND_MODULES:
        raise ChannelError(f"kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    return importlib.import_module(KIND_MODULES[kind])


def validate_channel(
    kind: str,
    config: dict[str, Any],
    secret: str | None,
    settings: NotifySettings | None,
    policy: TargetPolicy | None = None,
) -> str:
    """Check a channel; returns its log target.

    Args:
        settings: the service's settings, to check what the kind needs of them (SMTP server,
            SMS gateway); None checks the channel's own fields only (the web API: the web
            process need not have the service's settings).
        policy: where a channel URL may point; None: that of ``settings`` (of the defaults,
            nothing private, when ``settings`` is None too).

    Raises:
        ChannelError: unknown kind, malformed URL or address, an URL whose host is an IP
            address the policy refuses (loopback, private...), missing secret, or a setting
            the kind needs unset; the message names it.
    """
    module = module_for(kind)
    if not isinstance(config, dict):
        raise ChannelError(f"config: expected an object, got {config!r}")
    module.validate(config, secret)
    if "url" in config:
        (policy or TargetPolicy.of(settings)).check_url(config["url"])
    if settings is not None and hasattr(module, "check_settings"):
        module.check_settings(settings)
    return str(module.target(config))


def describe(channel: ChannelRecord, error: ChannelError) -> str:
    """``notify channel 7 '车队群' (dingtalk): config.url: expected ...``."""
    return f"notify channel {channel.id} {channel.name!r} ({channel.kind}): {error}"


# --- shared checks -------------------------------------------------------------------------


def require_url(value: Any, name: str = "config.url") -> str:
    """An http(s) URL with a host.

    Raises:
        ChannelError: anything else, naming ``name``.
    """
    expected = f"{name}: expected an http:// or https:// URL with a host, got {value!r}"
    if not isinstance(value, str) or not value or any(c.isspace() for c in value):
        raise ChannelError(expected)
    try:
        url = yarl.URL(value)
    except (ValueError, TypeError):
        raise ChannelError(expected) from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ChannelError(expected)
    return value


def require_secret(secret: str | None) -> str:
    """Raises ChannelError unless a non-empty secret is given."""
    if not isinstance(secret, str) or not secret.strip():
        raise ChannelError("secret: expected the signing secret the receiver gave, got none")
    return secret


def url_target(config: dict[str, Any]) -> str:
    """The URL as the delivery log and the log lines name it: no query string (钉钉 and 企业微信
    carry their token there), no user info, and every path segment of 16 characters or more cut
    to its first 4 (飞书 and many webhooks carry their token in the path):
    ``https://open.feishu.cn/open-apis/bot/v2/hook/0a1b…``."""
    url = yarl.URL(str(config.get("url", "")))
    segments = [s if len(s) < 16 else s[:4] + "…" for s in url.raw_path.split("/")]
    port = f":{url.explicit_port}" if url.explicit_port else ""
    return f"{url.scheme}://{url.raw_host}{port}{'/'.join(segments)}"


_EMAIL = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+$")
_PHONE = re.compile(r"^\+?[0-9]{5,20}$")


def require_list(
    config: dict[str, Any], name: str, pattern: re.Pattern[str], what: str
) -> list[str]:
    """A non-empty list of strings each matching ``pattern``.

    Raises:
        ChannelError: naming ``config.<name>``.
    """
    values = config.get(name)
    if not isinstance(values, list) or not values or len(values) > 100:
        raise ChannelError(f"config.{name}: expected a list of 1 to 100 {what}, got {values!r}")
    for value in values:
        if not isinstance(value, str) or not pattern.match(value):
            raise ChannelError(f"config.{name}: expected {what}, got {value!r}")
    return values


def email_addresses(config: dict[str, Any]) -> list[str]:
    return require_list(config, "to", _EMAIL, "e-mail addresses (name@example.com)")


def phone_numbers(config: dict[str, Any]) -> list[str]:
    return require_list(config, "phones", _PHONE, "phone numbers (5-20 digits, optional +)")


def check_email_address(value: str | None, setting: str) -> str:
    if not isinstance(value, str) or not _EMAIL.match(value):
        raise ChannelError(f"{setting}: expected an e-mail address, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    """A receiver's HTTP answer: status, body as text (UTF-8, undecodable bytes replaced)."""

    status: int
    text: str
    reason: str


async def post(
    ctx: SendContext,
    url: str,
    content: bytes,
    content_type: str,
    headers: dict[str, str] | None = None,
) -> HttpAnswer | Outcome:
    """POST ``content`` within ``notify.send_timeout_s`` (no redirects followed); a transport
    error or a timeout comes back as a failed :class:`Outcome` (the caller checks the answer).
    aiohttp rather than httpx: at 1,000 alarms/s to several channels the client is most of the
    worker's CPU, and aiohttp's costs a fraction of httpx's per request (benchmarks/notify.py)."""
    timeout = ctx.settings.send_timeout_s
    try:
        if ctx.policy is not None:
            ctx.policy.check_literal(yarl.URL(url).host or "")
        async with ctx.http.post(
            url,
            data=content,
            headers={"Content-Type": content_type, **(headers or {})},
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            body = await response.read()
            return HttpAnswer(
                response.status, body.decode("utf-8", errors="replace"), response.reason or ""
            )
    except TargetRefused as error:
        return Outcome.failed(f"target refused: {error}", final=True)
    except aiohttp.ClientConnectorError as error:
        if isinstance(error.os_error, TargetRefused):
            return Outcome.failed(f"target refused: {error.os_error}", final=True)
        return Outcome.failed(f"{type(error).__name__}: {error}")
    except TimeoutError as error:
        return Outcome.failed(f"no answer within {timeout} s ({type(error).__name__})")
    except aiohttp.ClientError as error:
        return Outcome.failed(f"{type(error).__name__}: {error}")


async def post_json(
    ctx: SendContext, url: str, body: dict[str, Any] | bytes, headers: dict[str, str] | None = None
) -> HttpAnswer | Outcome:
    """POST ``body`` as JSON (UTF-8); see :func:`post`."""
    import json

    content = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    return await post(ctx, url, content, "application/json; charset=utf-8", headers)


def robot_outcome(response: HttpAnswer, code_keys: tuple[str, ...]) -> Outcome:
    """A robot's answer: HTTP 200 with a JSON object whose code (first of ``code_keys`` present)
    is 0 is success; anything else (an HTTP error, garbage, a non-zero code) fails."""
    import json

    text = response.text[:REPLY_MAX_CHARS]
    if response.status != 200:
        return Outcome.failed(text or response.reason, response.status)
    try:
        data = json.loads(response.text)
    except ValueError:
        return Outcome.failed(f"expected a JSON answer, got {text!r}", response.status)
    if not isinstance(data, dict):
        return Outcome.failed(f"expected a JSON object, got {text!r}", response.status)
    for key in code_keys:
        if key in data:
            if data[key] == 0:
                return Outcome(True, response.status, text)
            return Outcome.failed(text, response.status)
    return Outcome.failed(f"expected {' or '.join(code_keys)} in {text!r}", response.status)
