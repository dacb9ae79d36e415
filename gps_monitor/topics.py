"""The MQTT topic contract, in one place.

Inbound (terminals or a gateway publish):
    ``{prefix}gps/v1/{terminal_id}/position``  one JSON position object
    ``{prefix}gps/v1/{terminal_id}/batch``     a JSON array of them (``reupload: true`` = 补报)
    ``{prefix}gps/v1/{terminal_id}/heartbeat`` contact without a position (empty or a JSON
                                               object): keeps the terminal online

Internal (ingest publishes after commit, rules and web subscribe):
    ``{prefix}positions/v1/{company_id}/{vehicle_id}``  accepted positions, JSON array

Alarms (rules publish as an alarm opens and as it closes):
    ``{prefix}alarms/v1/{company_id}/{vehicle_id}/{alarm_type}``
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gps_monitor.errors import PayloadError

InboundKind = Literal["position", "batch", "heartbeat"]
INBOUND_KINDS: tuple[InboundKind, ...] = ("position", "batch", "heartbeat")


def inbound_filter(prefix: str = "") -> str:
    """Subscription filter for everything terminals publish."""
    return f"{prefix}gps/v1/+/+"


def position_topic(terminal_id: str, prefix: str = "") -> str:
    return f"{prefix}gps/v1/{terminal_id}/position"


def batch_topic(terminal_id: str, prefix: str = "") -> str:
    return f"{prefix}gps/v1/{terminal_id}/batch"


def heartbeat_topic(terminal_id: str, prefix: str = "") -> str:
    """Contact without a position (DOMAIN.md: offline = no *message* for the threshold)."""
    return f"{prefix}gps/v1/{terminal_id}/heartbeat"


def accepted_topic(company_id: int, vehicle_id: int, prefix: str = "") -> str:
    return f"{prefix}positions/v1/{company_id}/{vehicle_id}"


def accepted_filter(prefix: str = "") -> str:
    return f"{prefix}positions/v1/+/+"


def alarm_topic(company_id: int, vehicle_id: int, alarm_type: str, prefix: str = "") -> str:
    return f"{prefix}alarms/v1/{company_id}/{vehicle_id}/{alarm_type}"


def alarm_filter(prefix: str = "") -> str:
    return f"{prefix}alarms/v1/#"


@dataclass(frozen=True, slots=True)
class InboundTopic:
    """A parsed inbound topic."""

    terminal_id: str
    kind: InboundKind


def parse_inbound(topic: str, prefix: str = "") -> InboundTopic:
    """Split ``{prefix}gps/v1/{terminal_id}/{position|batch|heartbeat}``.

    Raises:
        PayloadError(reason="bad_topic"): the topic does not follow the contract.
    """
    expected = f"{prefix}gps/v1/{{terminal_id}}/position|batch|heartbeat"
    if not topic.startswith(prefix):
        raise PayloadError("bad_topic", f"expected {expected}, got {topic!r}")
    parts = topic[len(prefix) :].split("/")
    if len(parts) != 4 or parts[0] != "gps" or parts[1] != "v1" or not parts[2]:
        raise PayloadError("bad_topic", f"expected {expected}, got {topic!r}")
    kind = parts[3]
    if kind not in INBOUND_KINDS:
        raise PayloadError("bad_topic", f"expected {expected}, got {topic!r}")
    return InboundTopic(terminal_id=parts[2], kind=kind)
