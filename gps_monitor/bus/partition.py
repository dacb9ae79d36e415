"""Which partition a terminal belongs to: the same answer as NATS's subject transform.

The inbound stream maps ``gps.v1.<terminal>.<kind>`` to ``in.<partition>.gps.v1.<terminal>.<kind>``
with the mapping function ``{{partition(P,1)}}`` (nats-server ``server/subject_transform.go``:
the bytes of the named wildcard tokens, here only the terminal id, hashed with 32-bit FNV-1a,
modulo P). Rules computes the same function in Python to know which vehicles a partition holds
(to load only their state and run the offline timer only for them), so both must agree exactly:
``tests/test_bus_partition.py`` checks it against a real server.
"""

from __future__ import annotations

from gps_monitor.bus.nats_names import level_to_token

_FNV32_OFFSET_BASIS = 0x811C9DC5
_FNV32_PRIME = 0x01000193
_MASK32 = 0xFFFFFFFF


def fnv1a_32(data: bytes) -> int:
    """32-bit FNV-1a of ``data`` (as Go's ``hash/fnv.New32a``): 0 .. 2**32-1."""
    h = _FNV32_OFFSET_BASIS
    for byte in data:
        h = ((h ^ byte) * _FNV32_PRIME) & _MASK32
    return h


def partition_of(terminal_id: str, partitions: int) -> int:
    """The partition ``0 .. partitions-1`` of ``terminal_id`` (the UTF-8 bytes of its subject
    token, FNV-1a mod P), equal to what nats-server's ``partition(P, <terminal wildcard>)`` puts
    in the subject. The token is the id as the server's MQTT listener writes it: a ``.`` in the
    id is ``//`` there (:func:`~gps_monitor.bus.nats_names.level_to_token`), and the server
    hashes that.

    Raises:
        ValueError: ``partitions`` < 1.
    """
    if partitions < 1:
        raise ValueError(f"expected at least 1 partition, got {partitions}")
    if partitions == 1:
        return 0
    return fnv1a_32(level_to_token(terminal_id).encode()) % partitions
