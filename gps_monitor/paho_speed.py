"""Speed-ups of a paho-mqtt 2.2 client's socket path (used under aiomqtt, which drives paho's
socket with ``add_reader``/``add_writer`` on the event-loop thread).

Read in paho's source: it reads a packet with three or four ``recv`` calls (command byte, each
length byte, body), one packet per readable event; it writes each queued packet with its own
``send``; and it formats a DEBUG line per packet in and out. At thousands of messages per second
those syscalls and lines cost more than the messages' own work, for the workers (a batch's
PUBACKs, rules' alarms) and for the benchmark's terminals alike, and so does paho's decoding of
a PUBACK (a ``ReasonCode`` and a ``Properties`` object per packet). :func:`speed_up` applies
the remedies below to one client; each keeps paho's own packet handling and its error paths
(``BlockingIOError`` = "come back later", partial writes kept for the next writable event).
"""

from __future__ import annotations

import contextlib
import logging
import socket
from typing import Any

import paho.mqtt.client as paho_mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

_READ_BYTES = 256 * 1024
_JOIN_BYTES = 256 * 1024  # most bytes joined into one send
_PUBLISH = 0x30
_PUBACK = 0x40
_DISCONNECT = 0xE0


def no_delay(paho: Any) -> None:
    """Turn Nagle's algorithm off on every TCP socket the paho client ``paho`` opens (chained in
    front of its ``on_socket_open``; set once, before connecting).

    paho leaves it on. MQTT at QoS 1 is small request/response packets (a PUBLISH and its
    PUBACK): with Nagle on, a small write waits while an earlier one is unacknowledged, and the
    peer's delayed ACK holds that acknowledgement up to 40 ms on Linux, so a publish that waits
    for its PUBACK could take 40 ms instead of 0.3 ms (measured here against Mosquitto, whose
    side is ``set_tcp_nodelay`` in deploy/mosquitto/mosquitto.conf). asyncio's own transports
    (asyncpg, nats-py, the embedded amqtt broker) already set ``TCP_NODELAY``.
    """
    opened = paho.on_socket_open

    def on_socket_open(client: Any, userdata: Any, sock: Any) -> None:
        with contextlib.suppress(OSError, AttributeError):  # a non-TCP socket: nothing to do
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if opened is not None:
            opened(client, userdata, sock)

    paho.on_socket_open = on_socket_open


def speed_up(paho: Any) -> None:
    """:func:`buffer_reads`, :func:`coalesce_writes`, :func:`skip_debug_lines` and
    :func:`fast_pubacks` on the paho client ``paho`` (``aiomqtt.Client._client``), once per
    client."""
    if getattr(paho, "_gps_monitor_sped_up", False):
        return
    paho._gps_monitor_sped_up = True
    buffer_reads(paho)
    coalesce_writes(paho)
    skip_debug_lines(paho)
    fast_pubacks(paho)


def buffer_reads(paho: Any) -> None:
    """Make the paho client ``paho`` read its socket in large chunks.

    paho's ``_packet_read`` asks ``_sock_recv`` for 1 byte (command), 1 byte per length byte,
    then the body; and ``loop_read`` (called by aiomqtt when the socket is readable) handles
    one packet while nothing is in flight outward. Here ``_sock_recv`` serves those requests
    from one ``recv`` of up to 256 KiB (raising ``BlockingIOError`` as the socket does once the
    chunk is used up, which paho takes as "come back later", keeping a partial packet), and
    ``loop_read`` goes on while the chunk holds unread bytes. TLS sockets work the same way
    (aiomqtt still drains the SSL layer's pending bytes after ``loop_read``).
    """
    recv = paho._sock_recv
    read = paho.loop_read
    chunk: list[Any] = [b"", 0]  # the bytes of the last recv, position of the next unread

    def sock_recv(bufsize: int) -> bytes:
        data, pos = chunk
        if pos >= len(data):
            data = recv(_READ_BYTES)  # raises BlockingIOError when nothing is there
            pos = 0
            if not data:
                chunk[0], chunk[1] = b"", 0
                return data  # connection closed
        end = pos + bufsize
        chunk[0], chunk[1] = data, end
        return data[pos:end]

    def loop_read(max_packets: int = 1) -> Any:
        rc = read(max_packets)
        while (
            rc == paho_mqtt.MQTT_ERR_SUCCESS and chunk[1] < len(chunk[0]) and paho._sock is not None
        ):
            rc = read(1)
        return rc

    paho._sock_recv = sock_recv
    paho.loop_read = loop_read


def skip_debug_lines(paho: Any) -> None:
    """paho formats and logs a DEBUG line per packet in and out; keep only the others, unless
    the paho logger's DEBUG is on."""
    logger = paho._logger
    if logger is None or logger.isEnabledFor(logging.DEBUG):
        return
    easy_log = paho._easy_log
    debug = paho_mqtt.MQTT_LOG_DEBUG

    def quiet_log(level: Any, fmt: str, *args: Any) -> None:
        if level != debug:
            easy_log(level, fmt, *args)

    paho._easy_log = quiet_log


def coalesce_writes(paho: Any) -> None:
    """Make the paho client ``paho`` write its queued packets with one ``send``.

    paho's ``_packet_write`` (run by ``loop_write`` when the socket is writable) pops one
    queued packet, writes it with one ``send``, and goes on to the next. Here the packets
    queued at that moment (up to 256 KiB) are first joined into one stand-in packet, which paho
    then writes as it writes any other (a partial write keeps the rest queued). Packets whose
    completion paho acts on are left as they are: a QoS 0 PUBLISH (``on_publish`` on write) and
    DISCONNECT (closes the socket); QoS 1 publishes complete on their PUBACK, which this does
    not change.
    """
    write = paho._packet_write

    def packet_write() -> Any:
        out = paho._out_packet
        if len(out) > 1:
            taken: list[Any] = []
            size = 0
            while out and size < _JOIN_BYTES:
                packet = out[0]
                command = packet["command"] & 0xF0
                if command == _DISCONNECT or (command == _PUBLISH and packet["qos"] == 0):
                    break
                taken.append(out.popleft())
                size += packet["to_process"]
            if len(taken) == 1:
                out.appendleft(taken[0])
            elif taken:
                joined = b"".join(bytes(t["packet"][t["pos"] :]) for t in taken)
                out.appendleft(
                    {"command": _PUBACK, "mid": 0, "qos": 0, "pos": 0, "to_process": len(joined),
                     "packet": joined, "info": None}
                )  # fmt: skip
        return write()

    paho._packet_write = packet_write


_PUBACK_SUCCESS = ReasonCode(PacketTypes.PUBACK)  # "Success" (0)
_NO_PROPERTIES = Properties(PacketTypes.PUBACK)


def fast_pubacks(paho: Any) -> None:
    """Handle a plain PUBACK (packet id only: MQTT 3.1.1's, and MQTT 5's "Success" without
    properties, which a broker sends in its short form) without paho's general decoder, which
    builds a ``ReasonCode`` and a ``Properties`` object per packet (``Properties.__init__`` alone
    costs about 15 us). ``on_publish`` gets the same values as from paho, as shared objects
    that must not be changed: reason "Success" and empty properties. Any other PUBACK (a failure
    reason code, properties) and PUBCOMP go through paho's own handler.
    """
    handle = paho._handle_pubackcomp

    def handle_pubackcomp(cmd: str) -> Any:
        packet = paho._in_packet["packet"]
        if cmd != "PUBACK" or len(packet) != 2:
            return handle(cmd)
        mid = (packet[0] << 8) | packet[1]
        paho._easy_log(paho_mqtt.MQTT_LOG_DEBUG, "Received %s (Mid: %d)", cmd, mid)
        with paho._out_message_mutex:
            if mid in paho._out_messages:
                return paho._do_on_publish(mid, _PUBACK_SUCCESS, _NO_PROPERTIES)
        return paho_mqtt.MQTT_ERR_SUCCESS

    paho._handle_pubackcomp = handle_pubackcomp
