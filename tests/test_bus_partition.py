"""partition_of agrees with nats-server's partition() subject transform, terminal by terminal."""

from __future__ import annotations

import random
import string

import nats
import pytest
from nats.js.api import StreamConfig, SubjectTransform
from nats_helpers import PrivateNats, nats_server  # noqa: F401  (fixture)

from gps_monitor.bus.partition import fnv1a_32, partition_of


def test_fnv1a_32_matches_the_published_test_vectors() -> None:
    # the FNV reference vectors (Fowler/Noll/Vo, "FNV-1a 32-bit")
    assert fnv1a_32(b"") == 0x811C9DC5
    assert fnv1a_32(b"a") == 0xE40C292C
    assert fnv1a_32(b"foobar") == 0xBF9CF968


def test_partition_of_refuses_no_partitions() -> None:
    with pytest.raises(ValueError, match="at least 1 partition"):
        partition_of("T1", 0)
    assert partition_of("anything", 1) == 0


def _terminal_ids(count: int) -> list[str]:
    rng = random.Random(13)
    ids = ["T1", "013800138000", "13912345678", "粤B12345", "term-01_x", "A", "0"]
    alphabet = string.ascii_letters + string.digits + "-_"
    while len(ids) < count:
        if rng.random() < 0.5:  # JT/T 808 terminal phone numbers
            ids.append("".join(rng.choice(string.digits) for _ in range(12)))
        else:
            ids.append("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 20))))
    return ids


@pytest.mark.parametrize("partitions", [7, 32])
async def test_partition_of_agrees_with_a_real_nats_server(
    nats_server: PrivateNats,  # noqa: F811
    partitions: int,
) -> None:
    terminals = _terminal_ids(500)
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        await js.add_stream(
            StreamConfig(
                name="PARTITION_CHECK",
                subjects=["gps.v1.*.*"],
                subject_transform=SubjectTransform(
                    src="gps.v1.*.*",
                    dest=f"in.{{{{partition({partitions},1)}}}}.gps.v1.{{{{wildcard(1)}}}}"
                    ".{{wildcard(2)}}",
                ),
            )
        )
        for terminal in terminals:
            await js.publish(f"gps.v1.{terminal}.position", b"{}")
        by_server: dict[str, int] = {}
        for sequence in range(1, len(terminals) + 1):
            message = await js.get_msg("PARTITION_CHECK", sequence)
            tokens = message.subject.split(".")
            assert tokens[0] == "in" and tokens[2:4] == ["gps", "v1"], message.subject
            by_server[tokens[4]] = int(tokens[1])
    finally:
        await nc.close()
    assert len(by_server) == len(set(terminals))
    disagreements = {
        t: (p, partition_of(t, partitions))
        for t, p in by_server.items()
        if partition_of(t, partitions) != p
    }
    assert disagreements == {}
    assert len(set(by_server.values())) == partitions  # every partition met: not a constant


async def test_dotted_terminal_ids_through_the_mqtt_listener_keep_their_id_and_partition(
    nats_server: PrivateNats,  # noqa: F811
) -> None:
    """A registered terminal id may hold '.' (``check_terminal_id``); NATS's MQTT listener writes
    it as ``//`` in the subject and its partition() hashes that token. The app must read the
    terminal id back unchanged, compute the server's partition, and publish natively (the
    gateway, tests) on the very subject the listener uses, or the id is refused as a bad topic
    and rules owns the vehicle in another partition than ingest."""
    import paho.mqtt.client as mqtt

    from gps_monitor.bus.nats_names import NatsNames

    partitions = 32
    terminals = ["T.1", ".T", "T..1", "a.b.c.d", "粤B.12345", "T1"]
    names = NatsNames("county-a/")
    source, destination = names.inbound_transform(partitions)
    nc = await nats.connect(nats_server.url)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="dotted")
    try:
        js = nc.jetstream()
        await js.add_stream(
            StreamConfig(
                name=names.inbound_stream,
                subjects=[source],
                subject_transform=SubjectTransform(src=source, dest=destination),
            )
        )
        assert nats_server.mqtt_port is not None
        client.connect("127.0.0.1", nats_server.mqtt_port)
        client.loop_start()
        for terminal in terminals:  # as a terminal publishes
            client.publish(f"county-a/gps/v1/{terminal}/position", b"{}", qos=1).wait_for_publish(5)
        for terminal in terminals:  # as the app publishes natively
            await js.publish(names.to_subject(f"county-a/gps/v1/{terminal}/batch"), b"[]")
        stored = [
            (await js.get_msg(names.inbound_stream, sequence)).subject
            for sequence in range(1, 2 * len(terminals) + 1)
        ]
    finally:
        client.loop_stop()
        client.disconnect()
        await nc.close()
    read_back = [names.to_topic(subject) for subject in stored]
    assert read_back == [
        (f"county-a/gps/v1/{t}/{kind}", partition_of(t, partitions))
        for kind in ("position", "batch")
        for t in terminals
    ]
