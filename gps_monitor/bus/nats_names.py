"""Names on NATS JetStream: streams, subjects, consumers, and the one mapping between the app's
logical topics (MQTT form) and NATS subjects.

Inside the app every topic keeps its MQTT form (``{prefix}gps/v1/T1/position``,
``{prefix}positions/v2/7``, ``{prefix}alarms/v1/3/12/overspeed``); on NATS a ``/`` is a ``.``
(as NATS's own MQTT listener maps a terminal's MQTT topic to a subject). With the MQTT topic
prefix ``county-a/`` the subjects start with ``county-a.`` and the streams are named with a
``_COUNTY_A`` suffix, so several deployments or test runs can share one NATS account.

============================  =====================================================  ===========
stream                        subjects (captured -> stored)                          consumers
============================  =====================================================  ===========
``GPS_INBOUND``               ``gps.v1.<terminal>.<kind>`` ->                        ``ingest-pNN``
                              ``in.<partition>.gps.v1.<terminal>.<kind>``
                              (``partition(P,1)`` transform); ``claim.ingest.<p>``
``GPS_POSITIONS``             ``positions.v2.<partition>``; ``claim.rules.<p>``      ``rules-pNN``
``GPS_ALARMS``                ``alarms.v1.<company>.<vehicle>.<type>``               (see below)
============================  =====================================================  ===========

notify (alarms) and jt809 (positions and alarms) read whole streams through one durable consumer
each, named after the service (:mod:`gps_monitor.bus.nats_durable`); the web hub subscribes to
the subjects with core NATS.

``claim.<stage>.<p>`` carries no data: a process publishes one to take an idle partition (a
pinned-client consumer pins the process that receives a message, so a partition without
traffic would have no owner, and rules must run its vehicles' offline timer all the same).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Stage = Literal["ingest", "rules"]
STAGES: tuple[Stage, ...] = ("ingest", "rules")
PRIORITY_GROUP = "owners"


def _stream_suffix(prefix: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9]+", "_", prefix).strip("_").upper()
    return f"_{cleaned}" if cleaned else ""


def level_to_token(level: str) -> str:
    """One MQTT topic level -> its NATS subject token, as nats-server's MQTT listener writes it
    (``server/mqtt.go``): a ``.`` becomes ``//`` (``T.1`` -> ``T//1``), an empty level ``/``.
    The terminal id's token is what the inbound stream's ``partition()`` transform hashes."""
    return level.replace(".", "//") if level else "/"


def token_to_level(token: str) -> str:
    """Inverse of :func:`level_to_token`: ``T//1`` -> ``T.1``, ``/`` -> an empty level."""
    return "" if token == "/" else token.replace("//", ".")


@dataclass(frozen=True, slots=True)
class NatsNames:
    """Every NATS name of one deployment (``prefix``: the MQTT topic prefix, e.g. ``""`` or
    ``"county-a/"``)."""

    prefix: str = ""

    @property
    def subject_prefix(self) -> str:
        """``county-a/`` -> ``county-a.`` (the topic prefix's closing ``/`` is a separator)."""
        if self.prefix.endswith("/"):
            return self.to_subject(self.prefix[:-1]) + "."
        return self.to_subject(self.prefix) if self.prefix else ""

    def stream(self, base: str) -> str:
        """``GPS_INBOUND`` etc. with the deployment's suffix."""
        return base + _stream_suffix(self.prefix)

    @property
    def inbound_stream(self) -> str:
        return self.stream("GPS_INBOUND")

    @property
    def positions_stream(self) -> str:
        return self.stream("GPS_POSITIONS")

    @property
    def alarms_stream(self) -> str:
        return self.stream("GPS_ALARMS")

    def stage_stream(self, stage: Stage) -> str:
        return self.inbound_stream if stage == "ingest" else self.positions_stream

    def consumer(self, stage: Stage, partition: int) -> str:
        """``ingest-p07``: the durable consumer of one stage and partition."""
        return f"{stage}-p{partition:02d}"

    def claim_subject(self, stage: Stage, partition: int) -> str:
        return f"{self.subject_prefix}claim.{stage}.{partition}"

    def partition_filter(self, stage: Stage, partition: int) -> list[str]:
        """The subjects of one partition's consumer: its data and its claims."""
        sp = self.subject_prefix
        data = f"{sp}in.{partition}.>" if stage == "ingest" else f"{sp}positions.v2.{partition}"
        return [data, self.claim_subject(stage, partition)]

    def is_claim(self, subject: str) -> bool:
        return subject.startswith(f"{self.subject_prefix}claim.")

    def inbound_transform(self, partitions: int) -> tuple[str, str]:
        """(source, destination) of the inbound stream's subject transform."""
        sp = self.subject_prefix
        return (
            f"{sp}gps.v1.*.*",
            f"{sp}in.{{{{partition({partitions},1)}}}}.gps.v1.{{{{wildcard(1)}}}}"
            ".{{wildcard(2)}}",
        )

    @staticmethod
    def to_subject(topic: str) -> str:
        """A logical topic (MQTT form) -> its NATS subject, as NATS's MQTT listener maps it: each
        level one token, a ``.`` inside a level ``//``, an empty level ``/``
        (``gps/v1/T.1/position`` -> ``gps.v1.T//1.position``)."""
        return ".".join(map(level_to_token, topic.split("/")))

    def to_topic(self, subject: str) -> tuple[str, int | None]:
        """A subject as delivered -> (logical topic in MQTT form, partition or None).

        ``in.<p>.gps.v1.T1.position`` -> (``gps/v1/T1/position``, p); ``positions.v2.<p>`` ->
        (``positions/v2/<p>``, p); anything else keeps its tokens, partition None.
        """
        sp = self.subject_prefix
        rest = subject[len(sp) :] if subject.startswith(sp) else subject
        partition: int | None = None
        if rest.startswith("in."):
            number, _, rest = rest[3:].partition(".")
            partition = int(number)
        elif rest.startswith("positions.v2."):
            partition = int(rest.rsplit(".", 1)[1])
        if "/" in rest:  # a level with a '.' or an empty level (see level_to_token)
            return self.prefix + "/".join(map(token_to_level, rest.split("."))), partition
        return self.prefix + rest.replace(".", "/"), partition
