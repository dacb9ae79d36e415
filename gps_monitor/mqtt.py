"""Shared MQTT helpers for every gps-monitor service (aiomqtt 2.x over paho-mqtt 2.x).

What every service needs from the broker, in one place:

- :func:`build_client` makes an ``aiomqtt.Client`` from :class:`~gps_monitor.config.MqttSettings`:
  credentials, TLS, client id, MQTT v5 by default, and optionally a **persistent session**
  (v5: ``clean_start=False`` plus a ``SessionExpiryInterval`` of ``session_expiry_s``; v3.1.1:
  ``clean_session=False``) so the broker keeps QoS 1 messages while the service is down.
- **Manual acknowledgement** (``manual_ack=True``): aiomqtt 2.x lets paho acknowledge a QoS 1
  message as soon as it arrives, before the application has stored it, so a crash loses the
  messages held in memory. paho 2.x has application-controlled acks (``manual_ack_set(True)`` and
  ``ack(mid, qos)``); aiomqtt does not expose them yet (aiomqtt issue #345, PR #346), so we reach
  them through the underlying paho client ``client._client``. Call :func:`ack` for every
  received message once it is durably handled (after the database commit), **in arrival order**
  (MQTT 3.1.1 section 4.6 / MQTT 5 section 4.6: PUBACKs go out in the order the PUBLISHes came).
  Unacknowledged messages are redelivered by the broker when the session resumes.
- :func:`run_with_reconnect` is the explicit reconnect loop: connect, run the session coroutine,
  and on :class:`aiomqtt.MqttError` wait with exponential backoff (``reconnect_delay_s`` doubling
  up to ``reconnect_delay_max_s``) and connect again. Anything else propagates.

Typical consumer (rules worker, web feed)::

    async def session(client: aiomqtt.Client) -> None:
        await client.subscribe(topics.accepted_filter(prefix), qos=1)
        async for message in client.messages:
            handle(message)
            ack(client, message)

    await run_with_reconnect(
        settings.mqtt, session, client_id="gps-monitor-rules", manual_ack=True
    )

Broker note (Mosquitto): ``max_queued_messages`` (default 1000 per client) bounds what a
persistent session keeps while its client is away or slow; beyond it Mosquitto drops QoS 1
messages. Deployments set it to a size that covers the longest expected outage.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import aiomqtt
import paho.mqtt.client as paho_mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gps_monitor import paho_speed
from gps_monitor.config import MqttSettings
from gps_monitor.errors import ConfigurationError

log = logging.getLogger(__name__)

T = TypeVar("T")


def require_host(settings: MqttSettings) -> str:
    """The configured broker host.

    Raises:
        ConfigurationError: GPS_MONITOR_MQTT_HOST is not set.
    """
    if not settings.host:
        raise ConfigurationError(
            "GPS_MONITOR_MQTT_HOST is not set: expected a broker host such as 127.0.0.1"
        )
    return settings.host


def build_client(
    settings: MqttSettings,
    *,
    client_id: str | None = None,
    persistent: bool = False,
    manual_ack: bool = False,
    protocol: aiomqtt.ProtocolVersion | None = None,
    receive_maximum: int | None = None,
    **kwargs: Any,
) -> aiomqtt.Client:
    """An (unconnected) aiomqtt client for the configured broker; use it as ``async with``.

    Args:
        settings: host, port, credentials, TLS, keepalive, session expiry.
        client_id: MQTT client identifier; default ``settings.client_id``. A persistent session
            is kept under this id, so it must be stable across restarts and unique per process.
        persistent: keep the session (subscriptions and queued QoS 1 messages) on the broker
            while disconnected: v5 ``clean_start=False`` with ``SessionExpiryInterval =
            settings.session_expiry_s``; v3.1.1 ``clean_session=False``.
        manual_ack: do not acknowledge QoS 1/2 messages on arrival; the caller must call
            :func:`ack` for each one (after it is durably handled).
        protocol: MQTT version; default from ``settings.protocol_version`` (5 or 3.1.1).
        receive_maximum: MQTT v5 Receive Maximum (1..65535): QoS 1 messages the broker may
            have in flight to this client unacknowledged. A consumer that acknowledges after a
            batch's commit needs it at least as large as its batch (Mosquitto's default is 20).
            None: the broker's default; ignored on v3.1.1.
        kwargs: passed to ``aiomqtt.Client`` (e.g. ``max_queued_incoming_messages``).

    Raises:
        ConfigurationError: no broker host configured, or a TLS CA file that cannot be read.
    """
    host = require_host(settings)
    if protocol is None:
        protocol = (
            aiomqtt.ProtocolVersion.V5
            if settings.protocol_version == "5"
            else aiomqtt.ProtocolVersion.V311
        )
    identifier = client_id or settings.client_id
    options: dict[str, Any] = {
        "username": settings.username,
        "password": settings.password,
        "identifier": identifier,
        "protocol": protocol,
        "keepalive": settings.keepalive_s,
    }
    if settings.tls:
        try:
            options["tls_context"] = ssl.create_default_context(cafile=settings.tls_ca_file)
        except (OSError, ssl.SSLError) as error:
            raise ConfigurationError(
                f"mqtt.tls_ca_file: expected a readable PEM CA file, got "
                f"{settings.tls_ca_file!r} ({error})"
            ) from error
    if protocol == aiomqtt.ProtocolVersion.V5:
        properties = Properties(PacketTypes.CONNECT)
        if persistent:
            properties.SessionExpiryInterval = settings.session_expiry_s
            options["clean_start"] = False
        else:
            options["clean_start"] = True
        if receive_maximum is not None:
            properties.ReceiveMaximum = receive_maximum
        options["properties"] = properties
    else:
        options["clean_session"] = not persistent
    options.update(kwargs)
    client = aiomqtt.Client(host, settings.port, **options)
    paho_speed.no_delay(client._client)
    if manual_ack:
        # aiomqtt issue #345 / PR #346: not exposed yet, use paho's own switch.
        client._client.manual_ack_set(True)
    return client


def ack(client: aiomqtt.Client, message: aiomqtt.Message) -> None:
    """Acknowledge one received message (PUBACK for QoS 1, PUBCOMP for QoS 2).

    Only meaningful on a client built with ``manual_ack=True``; a no-op for QoS 0. Call it in
    arrival order, after the message's effects are committed. A message never acknowledged is
    redelivered (with the DUP flag) when the persistent session resumes.
    """
    if message.qos > 0:
        client._client.ack(message.mid, message.qos)


async def next_batch(messages: Any, limit: int, wait_s: float) -> list[aiomqtt.Message]:
    """The next batch of received messages, in arrival order: waits for one, then takes what
    is already queued, waiting up to ``wait_s`` seconds in all for more, at most ``limit``.
    Fewer, larger transactions under load (each commit costs a WAL flush) for a few
    milliseconds of latency. ``messages`` is ``client.messages``; raises what it raises
    (``aiomqtt.MqttError`` once the connection is gone)."""
    batch = [await anext(messages)]
    deadline = time.monotonic() + wait_s
    while len(batch) < limit:
        while len(messages) > 0 and len(batch) < limit:
            batch.append(await anext(messages))
        remaining = deadline - time.monotonic()
        if remaining <= 0 or len(batch) >= limit:
            break
        await asyncio.sleep(min(remaining, 0.002))
    return batch


def settle_disconnect(client: aiomqtt.Client) -> None:
    """Take note of how ``client``'s connection ended, once it has.

    aiomqtt 2.5 sets the reason of an unexpected disconnection on a future that nothing awaits
    once the ``async with`` block has failed, and asyncio then logs "Future exception was never
    retrieved" with it when the client is collected. The caller has the error already (the
    ``MqttError`` that ended its block), so reading it here only silences that log.
    """
    disconnected = client._disconnected
    if disconnected.done() and not disconnected.cancelled():
        disconnected.exception()


class Backoff:
    """Exponential reconnect delay: ``initial_s``, doubled per failure, capped at ``max_s``."""

    def __init__(self, initial_s: float, max_s: float) -> None:
        self.initial_s = initial_s
        self.max_s = max_s
        self.delay_s = initial_s

    def next_delay_s(self) -> float:
        """The delay to wait now (seconds); the following one doubles."""
        delay = self.delay_s
        self.delay_s = min(self.delay_s * 2, self.max_s)
        return delay

    def reset(self) -> None:
        self.delay_s = self.initial_s


async def run_with_reconnect(
    settings: MqttSettings,
    session: Callable[[aiomqtt.Client], Awaitable[T]],
    *,
    client_factory: Callable[[], aiomqtt.Client] | None = None,
    on_disconnect: Callable[[aiomqtt.MqttError], None] | None = None,
    **client_options: Any,
) -> T:
    """Run ``session(client)`` on a connected client, reconnecting with backoff when the
    connection fails or drops; returns what ``session`` returns once it returns normally.

    Args:
        settings: broker settings; ``reconnect_delay_s`` / ``reconnect_delay_max_s`` set the
            backoff (seconds).
        session: coroutine function run on each new connection (subscribe, then consume).
        client_factory: builds a fresh client per attempt; default
            ``build_client(settings, **client_options)``.
        on_disconnect: called with the error each time the connection is lost (e.g. to drop
            uncommitted, unacknowledged work, which the broker will redeliver).

    Raises:
        ConfigurationError: no broker host configured.
        Whatever ``session`` raises other than ``aiomqtt.MqttError``; cancellation.
    """
    backoff = Backoff(settings.reconnect_delay_s, settings.reconnect_delay_max_s)
    factory = client_factory or (lambda: build_client(settings, **client_options))
    while True:
        client = factory()
        try:
            async with client:
                log.info("connected to MQTT broker %s:%s", settings.host, settings.port)
                backoff.reset()
                return await session(client)
        except aiomqtt.MqttError as error:
            settle_disconnect(client)
            if on_disconnect is not None:
                on_disconnect(error)
            delay = backoff.next_delay_s()
            log.warning(
                "MQTT connection to %s:%s lost or refused (%s); reconnecting in %.1f s",
                settings.host,
                settings.port,
                error,
                delay,
            )
            await asyncio.sleep(delay)


class PublishError(aiomqtt.MqttError):
    """The broker did not acknowledge a QoS 1 message (not connected, refused, timed out).

    An ``aiomqtt.MqttError``, so :func:`run_with_reconnect` treats it as a broken connection.
    """


class PubackTracker:
    """QoS 1 publishing that returns once the broker's PUBACK is in, at any volume.

    What ``aiomqtt.Client.publish(qos=1)`` awaits (aiomqtt 2.5.1 over paho-mqtt 2.2, read in
    their source): it calls paho's ``publish`` and waits for paho's ``on_publish`` for that
    message id, which paho fires for QoS 1 only when the PUBACK arrives. But per call it also
    walks every pending call (``mid in self._pending_calls`` and ``len(list(...))``) and logs a
    warning once more than 10 are pending: quadratic, and a log line per message, when a worker
    has thousands of publishes in flight (the ingest worker's accepted positions, the JT/T 808
    gateway's 10,000 terminals). This tracker uses the same mechanism directly: paho's
    ``publish`` gives the message id, and an ``on_publish`` hook chained in front of aiomqtt's
    resolves the future waiting for that id (failing it on an MQTT 5 failure reason code).
    paho runs on the event-loop thread (aiomqtt drives its socket with add_reader/add_writer),
    so no locking is needed.

    Use one tracker per connected client (inside the ``run_with_reconnect`` session) and call
    :meth:`fail_all` when the connection is gone.

    At most :attr:`MAX_IN_FLIGHT` publishes wait for their PUBACK at once; more wait for room
    before they are sent. MQTT's packet identifiers are 16 bits and paho hands them out in turn,
    so in a burst of more than 65,535 publishes (the alarm outbox after a long broker outage)
    the next identifier is one still in flight: paho refuses that publish ("Message queue
    full"), which failed the whole call, and the same again at every retry.
    """

    MAX_IN_FLIGHT = 20_000
    """Publishes in flight at most, far below the 65,535 packet identifiers."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self._paho = client._client
        # message id -> what waits for its PUBACK: one publish's future, or a group's
        self._acks: dict[int, asyncio.Future[None] | _PubackGroup] = {}
        self._room = asyncio.Event()  # set while fewer than MAX_IN_FLIGHT are in flight
        self._room.set()
        # fail_all so far and its last reason: what fails the calls still waiting for room
        self._failures = 0
        self._failure = ""
        chained = self._paho.on_publish

        def on_publish(c: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
            waiter = self._acks.pop(mid, None)
            if len(self._acks) < self.MAX_IN_FLIGHT:
                self._room.set()
            if waiter is None:
                if chained is not None:
                    chained(c, userdata, mid, reason, props)  # type: ignore[call-arg]
                return
            if getattr(reason, "is_failure", False):
                error = PublishError(f"broker refused the message: {reason}")
                if isinstance(waiter, _PubackGroup):
                    waiter.fail(error)
                elif not waiter.done():
                    waiter.set_exception(error)
            elif isinstance(waiter, _PubackGroup):
                waiter.acked()
            elif not waiter.done():
                waiter.set_result(None)

        self._paho.on_publish = on_publish

    @property
    def in_flight(self) -> int:
        """Publishes waiting for their PUBACK."""
        return len(self._acks)

    def _send(self, topic: str, payload: bytes | str) -> int:
        """paho's QoS 1 publish; returns the message id.

        Raises:
            PublishError: paho refused it (e.g. not connected).
        """
        info = self._paho.publish(topic, payload, qos=1)
        if info.rc != paho_mqtt.MQTT_ERR_SUCCESS:
            raise PublishError(
                f"publish to {topic} refused by paho: {paho_mqtt.error_string(info.rc)}"
            )
        return int(info.mid)

    async def _wait_for_room(self) -> None:
        """Until fewer than :attr:`MAX_IN_FLIGHT` publishes wait for their PUBACK.

        Raises:
            PublishError: :meth:`fail_all` meanwhile (the connection is gone).
        """
        failures = self._failures
        while len(self._acks) >= self.MAX_IN_FLIGHT:
            self._room.clear()
            await self._room.wait()
            if self._failures != failures:
                raise PublishError(self._failure)

    def _forget(self, mids: Sequence[int], waiter: asyncio.Future[None] | _PubackGroup) -> None:
        """Stop waiting for the PUBACKs of ``mids`` still waited for by ``waiter`` (a timeout,
        a cancellation, a failure): their room goes to the calls waiting for it."""
        for mid in mids:
            if self._acks.get(mid) is waiter:
                del self._acks[mid]
        if len(self._acks) < self.MAX_IN_FLIGHT:
            self._room.set()

    async def publish(self, topic: str, payload: bytes | str, timeout_s: float) -> None:
        """Publish at QoS 1 and return once the PUBACK is in.

        Raises:
            PublishError: refused by paho (e.g. not connected) or by the broker (MQTT 5 reason
                code), connection lost (:meth:`fail_all`), or no PUBACK within ``timeout_s``.
        """
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        mid: int | None = None
        try:
            async with asyncio.timeout(timeout_s):
                if len(self._acks) >= self.MAX_IN_FLIGHT:
                    await self._wait_for_room()
                mid = self._send(topic, payload)
                self._acks[mid] = future
                await future
        except TimeoutError:
            raise PublishError(f"publish to {topic}: no PUBACK within {timeout_s} s") from None
        finally:
            if mid is not None and (not future.done() or future.cancelled()):
                self._forget([mid], future)  # a timeout, a cancellation

    async def publish_all(
        self, messages: Sequence[tuple[str, bytes | str]], timeout_s: float
    ) -> None:
        """Publish ``(topic, payload)`` messages at QoS 1 in order and return once every PUBACK
        is in: one future for all of them, not one per message (a burst of thousands of
        alarms). Beyond :attr:`MAX_IN_FLIGHT` in flight, the rest are sent as PUBACKs come in;
        ``timeout_s`` is for the whole call. Same errors as :meth:`publish` (the first failure
        fails the whole call; a message already sent stays sent)."""
        if not messages:
            return
        group = _PubackGroup(asyncio.get_running_loop().create_future(), len(messages))
        mids: list[int] = []
        try:
            async with asyncio.timeout(timeout_s):
                for topic, payload in messages:
                    if len(self._acks) >= self.MAX_IN_FLIGHT:
                        await self._wait_for_room()  # PublishError after a fail_all
                        if group.future.done():
                            break  # failed meanwhile (a refusal, the connection lost)
                    mid = self._send(topic, payload)
                    mids.append(mid)
                    self._acks[mid] = group
                await group.future
        except TimeoutError:
            raise PublishError(
                f"{group.waiting} of {len(messages)} publish(es) without PUBACK after {timeout_s} s"
            ) from None
        finally:
            # not all acknowledged: forget the ids still waiting (a timeout or a cancellation
            # cancels the group's future, whose exception() would raise CancelledError)
            future = group.future
            if not future.done() or future.cancelled() or future.exception() is not None:
                self._forget(mids, group)

    def fail_all(self, reason: str) -> None:
        """Fail every publish still waiting (the connection is gone)."""
        acks, self._acks = self._acks, {}
        self._failures += 1
        self._failure = reason
        self._room.set()  # the calls waiting for room fail too (_wait_for_room)
        for waiter in acks.values():
            if isinstance(waiter, _PubackGroup):
                waiter.fail(PublishError(reason))
            elif not waiter.done():
                waiter.set_exception(PublishError(reason))


class _PubackGroup:
    """What :meth:`PubackTracker.publish_all` waits on: ``future`` resolves when ``waiting``
    PUBACKs have come, or fails with the first failure."""

    __slots__ = ("future", "waiting")

    def __init__(self, future: asyncio.Future[None], waiting: int) -> None:
        self.future = future
        self.waiting = waiting

    def acked(self) -> None:
        self.waiting -= 1
        if self.waiting == 0 and not self.future.done():
            self.future.set_result(None)

    def fail(self, error: PublishError) -> None:
        if not self.future.done():
            self.future.set_exception(error)
