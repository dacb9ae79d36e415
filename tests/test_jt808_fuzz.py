"""Fuzzing the JT/T 808 inputs (issue 14, tests): random and mutated frames built from the real
device frames of ``../shared/data/jt808_frames.tsv``, with a fixed seed and a bounded number of
cases, so a run is repeatable and takes seconds.

- the decoders (splitter, unescape, header, every message body, the MQTT contract and its
  evidence) raise nothing but :class:`FrameError` / ``PayloadError`` on any input;
- a live gateway fed the same mutations over a real socket never fails a handler, answers
  every frame that decodes (as it would a good one), counts every one that does not, keeps the
  fuzzing connection alive, and keeps serving a good terminal on another connection.
"""

from __future__ import annotations

import contextlib
import csv
import json
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from jt808_helpers import (
    add_vehicle,
    authenticated,
    location_report,
    next_message,
    running_gateway,
    subscription,
)

from gps_monitor.errors import PayloadError
from ingest.jt808 import messages as m
from ingest.jt808.codec import (
    Frame,
    FrameError,
    FrameSplitter,
    SubpackageAssembler,
    checksum,
    decode_frame,
    digits_to_bcd,
    escape,
    unescape,
)
from ingest.jt808.sim import SimTerminal

SEED = 808
FUZZER = "13800000002"  # the fuzzing connection authenticates as this terminal
GOOD = "13800000001"


@pytest.fixture
def real_frames(shared_data: Path) -> list[bytes]:
    path = shared_data / "jt808_frames.tsv"
    if not path.exists():
        pytest.skip(f"{path} not found")
    with path.open(encoding="utf-8") as handle:
        return [bytes.fromhex(r["hex_wire"]) for r in csv.DictReader(handle, delimiter="\t")]


def reframe(plain: bytes) -> bytes:
    """Header+body (unescaped, no check code) -> a wire frame with a correct check code."""
    return b"\x7e" + escape(plain + bytes([checksum(plain)])) + b"\x7e"


def with_phone(wire: bytes, phone: str) -> bytes:
    """The frame re-addressed to ``phone`` (2013 or 2019 header), check code recomputed."""
    plain = bytearray(unescape(wire[1:-1])[:-1])
    if plain[2] & 0x40:  # 2019: version byte, BCD[10]
        plain[5:15] = digits_to_bcd(phone, 10)
    else:
        plain[4:10] = digits_to_bcd(phone, 6)
    return reframe(bytes(plain))


def mutate(rng: random.Random, wire: bytes) -> bytes:
    """One mutation of a frame: raw byte damage (mostly caught by the check code) or damage
    under a recomputed check code (reaches the header and body decoders)."""
    plain = bytearray(unescape(wire[1:-1])[:-1])
    kind = rng.randrange(9)
    if kind == 0:  # flip bits anywhere on the wire
        damaged = bytearray(wire)
        for _ in range(rng.randint(1, 4)):
            damaged[rng.randrange(len(damaged))] ^= 1 << rng.randrange(8)
        return bytes(damaged)
    if kind == 1:  # cut short, or cut and glued to another piece
        cut = rng.randrange(1, len(wire))
        return wire[:cut] + (wire[rng.randrange(len(wire)) :] if rng.random() < 0.5 else b"")
    if kind == 2:  # stray delimiters and escape bytes
        damaged = bytearray(wire)
        for _ in range(rng.randint(1, 3)):
            damaged.insert(rng.randrange(len(damaged) + 1), rng.choice((0x7E, 0x7D)))
        return bytes(damaged)
    if kind == 3:  # random bytes between delimiters
        return b"\x7e" + rng.randbytes(rng.randrange(0, 80)) + b"\x7e"
    if kind == 4:  # header fields: id, props (length, encryption, sub-package, version flag)
        field = rng.randrange(4)
        plain[field] = rng.randrange(256)
        return reframe(bytes(plain))
    if kind == 5:  # body bytes under a good check code
        for _ in range(rng.randint(1, 6)):
            if len(plain) > 13:
                plain[rng.randrange(12, len(plain))] = rng.randrange(256)
        return reframe(bytes(plain))
    if kind == 6:  # body truncated or extended, header length kept or fixed
        body_start = 12 if not plain[2] & 0x40 else 17
        body = plain[body_start:]
        body = body[: rng.randrange(len(body) + 1)] + rng.randbytes(rng.randrange(0, 40))
        header = bytearray(plain[:body_start])
        if rng.random() < 0.7:
            props = (header[2] << 8 | header[3]) & ~0x03FF | (len(body) & 0x03FF)
            header[2:4] = props.to_bytes(2, "big")
        return reframe(bytes(header + body))
    if kind == 7:  # sub-package flag with random total/index
        props = (plain[2] << 8 | plain[3]) | 0x2000
        header_end = 12 if not plain[2] & 0x40 else 17
        extra = rng.randrange(65536).to_bytes(2, "big") + rng.randrange(65536).to_bytes(2, "big")
        plain[2:4] = props.to_bytes(2, "big")
        return reframe(bytes(plain[:header_end] + extra + plain[header_end:]))
    return wire  # unchanged: good frames are part of the stream too


def mutations(frames: list[bytes], rng: random.Random, count: int) -> Iterator[bytes]:
    for _ in range(count):
        yield mutate(rng, rng.choice(frames))


def decode_everything(frame: Frame) -> None:
    """Run every decoder the gateway would run on this frame's body."""
    header = frame.header
    msg_id = header.msg_id
    if msg_id == m.MSG_REGISTER:
        m.decode_register(frame.body, is_2019=header.is_2019)
    elif msg_id == m.MSG_AUTHENTICATE:
        m.decode_auth(frame.body, is_2019=header.is_2019)
    elif msg_id == m.MSG_LOCATION:
        report = m.decode_location(frame.body)
        json.dumps(m.to_contract(report, utc_offset_min=480, evidence=m.location_evidence(frame)))
    elif msg_id == m.MSG_BATCH:
        batch = m.decode_batch(frame.body)
        for report, proof in zip(batch.reports, m.batch_evidence(frame, batch), strict=True):
            json.dumps(m.to_contract(report, utc_offset_min=480, evidence=proof, reupload=True))


def test_decoders_raise_only_frame_errors_on_mutated_real_frames(real_frames) -> None:
    rng = random.Random(SEED)
    splitter = FrameSplitter()
    assembler = SubpackageAssembler(max_packets=64, max_connection_bytes=64 * 1024)
    outcomes = {"decoded": 0, "bad_frame": 0, "bad_body": 0}
    for i, wire in enumerate(mutations(real_frames, rng, 4000)):
        with contextlib.suppress(FrameError):
            unescape(wire)
        pieces = _chunks(rng, wire)
        for piece in pieces:
            for content, raw in splitter.feed(piece):
                try:
                    frame = decode_frame(content, raw)
                except FrameError:
                    outcomes["bad_frame"] += 1
                    continue
                outcomes["decoded"] += 1
                try:
                    whole = assembler.add(frame, float(i))
                    if whole is not None:
                        decode_everything(whole)
                except PayloadError:  # FrameError and its family: the designed refusals
                    outcomes["bad_body"] += 1
    # the mutations reach every stage: some frames decode, some fail the frame checks, some
    # pass them and fail in a body decoder
    assert all(count > 100 for count in outcomes.values()), outcomes


async def test_live_gateway_survives_mutated_frames_and_keeps_serving(
    settings, pool, real_frames
) -> None:
    await add_vehicle(pool, GOOD, f"测A{GOOD[-5:]}")
    await add_vehicle(pool, FUZZER, f"测A{FUZZER[-5:]}")
    rng = random.Random(SEED + 1)
    addressed = [with_phone(w, FUZZER) for w in real_frames]
    async with (
        subscription(settings) as queue,
        running_gateway(settings, pool) as (gateway, port),
    ):
        good = await authenticated(port, GOOD)
        fuzzer = await authenticated(port, FUZZER)
        stream = _live_stream(rng, addressed, fuzzer)
        # what the gateway must see in that stream, by the same splitter and decoder
        expected_ok = expected_bad = expected_replies = 0
        for content, raw in FrameSplitter().feed(stream + b"\x7e"):
            try:
                frame = decode_frame(content, raw)
            except FrameError:
                expected_bad += 1
                continue
            expected_ok += 1
            expected_replies += frame.header.msg_id != m.MSG_TERMINAL_REPLY
        ok_before, bad_before = gateway.stats.frames_ok, sum(gateway.stats.frames_bad.values())
        for piece in _chunks(rng, stream):
            await fuzzer.send_raw(piece)
        # a final heartbeat with a serial no real frame uses: every reply before it is counted
        heartbeat = b"\x7e" + _heartbeat_plain(FUZZER, 0xFFFE) + b"\x7e"
        await fuzzer.send_raw(b"\x7e" + heartbeat)  # a leading 0x7E ends any cut-off frame
        replies = 0
        while True:
            reply = await fuzzer.read_frame()
            if reply.header.msg_id == m.MSG_PLATFORM_REPLY:
                serial, msg_id, result = m.decode_general_reply(reply.body)
                if (serial, msg_id) == (0xFFFE, m.MSG_HEARTBEAT):
                    assert result == m.RESULT_OK  # the fuzzing connection is still served
                    break
            replies += 1
        frames_ok = gateway.stats.frames_ok - ok_before - 1  # minus the marker heartbeat
        frames_bad = sum(gateway.stats.frames_bad.values()) - bad_before
        # a good terminal on another connection is served as before
        while not queue.empty():
            queue.get_nowait()
        assert await good.send_location(location_report("260101090000")) == m.RESULT_OK
        topic, position = await _message_from(queue, GOOD)
        await good.close()
        await fuzzer.close()
    assert gateway.stats.handler_errors == 0  # no handler raised anything unexpected
    assert frames_ok == expected_ok and expected_ok > 50
    assert frames_bad >= expected_bad > 50  # body errors count there too
    # the fuzzing connection stayed authenticated for most of it: mutated reports and batches
    # reached the body decoders and the broker
    assert gateway.stats.positions_published > 20
    assert replies == expected_replies
    assert topic.endswith(f"/{GOOD}/position") and position["fix_time"].startswith("2026-01-01")


# ------------------------------------------------------------------------------- helpers


def _live_stream(rng: random.Random, frames: list[bytes], fuzzer: SimTerminal) -> bytes:
    """400 mutations, with the fuzzer's own 0x0102 every 20 frames (a mutated 0x0102 may have
    refused it) and no 0x0003 logout for it (that would withdraw its code for good)."""
    auth_body = m.encode_auth(m.AuthRequest(fuzzer.auth_code), is_2019=False)
    out: list[bytes] = []
    for i in range(400):
        if i % 20 == 0:
            out.append(fuzzer.frame(m.MSG_AUTHENTICATE, auth_body)[1])
        wire = mutate(rng, rng.choice(frames))
        if not _is_logout(wire):
            out.append(wire)
    return b"".join(out)


def _is_logout(wire: bytes) -> bool:
    """Whether some candidate in ``wire`` decodes to a 0x0003."""
    for content, raw in FrameSplitter().feed(b"\x7e" + wire + b"\x7e"):
        try:
            if decode_frame(content, raw).header.msg_id == m.MSG_LOGOUT:
                return True
        except FrameError:
            continue
    return False


def _chunks(rng: random.Random, data: bytes) -> list[bytes]:
    """``data`` cut at random points (frames across reads and several in one read)."""
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, len(data) // 40 + 1)))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


def _heartbeat_plain(phone: str, serial: int) -> bytes:
    plain = bytes.fromhex("00020000") + digits_to_bcd(phone, 6) + serial.to_bytes(2, "big")
    return escape(plain + bytes([checksum(plain)]))


async def _message_from(queue, terminal_id: str):  # type: ignore[no-untyped-def]
    while True:
        topic, payload = await next_message(queue)
        if f"/{terminal_id}/" in topic:
            return topic, payload
