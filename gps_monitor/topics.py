"""The MQTT topic contract, in one place.

Inbound (terminals or a gateway publish):
    ``{prefix}gps/v1/{terminal_id}/position``  one JSON position object
    ``{prefix}gps/v1/{terminal_id}/batch``     a JSON array of them (``reupload: true`` = 补报)
    ``{prefix}gps/v1/{terminal_id}/heartbeat`` contact without a position (empty or a JSON
                                               object): keeps the terminal online

Internal (ingest publishes after commit, rules, web and jt809 subscribe):
    ``{prefix}positions/v2/{partition}``  the accepted positions of one committed batch of one
                                          partition (0 on MQTT), a JSON array of
                                          ``Position.to_dict()`` (each element names its
                                          company_id and vehicle_id)

Alarms (rules publish as an alarm opens and as it closes):
    ``{prefix}alarms/v1/{company_id}/{vehicle_id}/{alarm_type}``

Downlink commands (the command dispatcher in ``gps-monitor ingest`` publishes; the terminal or the
JT/T 808 gateway subscribes), see :mod:`gps_monitor.commands`:
    ``{prefix}cmd/v1/{terminal_id}/{name}``          one command, e.g. ``name`` = ``text``
and their answers and the terminal's presence (terminal or gateway publish, the dispatcher
consumes; ingest acknowledges and ignores them):
    ``{prefix}gps/v1/{terminal_id}/cmd_result``      ``{"command_id", "result"}``
    ``{prefix}gps/v1/{terminal_id}/status``          ``{"online": true|false}``
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gps_monitor.errors import PayloadError

InboundKind = Literal["position", "batch", "heartbeat", "cmd_result", "status"]
INBOUND_KINDS: tuple[InboundKind, ...] = ("position", "batch", "heartbeat")  # ingest's
COMMAND_KINDS: frozenset[str] = frozenset({"cmd_result", "status"})  # the command dispatcher's


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


def cmd_result_topic(terminal_id: str, prefix: str = "") -> str:
    return f"{prefix}gps/v1/{terminal_id}/cmd_result"


def status_topic(terminal_id: str, prefix: str = "") -> str:
    return f"{prefix}gps/v1/{terminal_id}/status"


def command_answer_filters(prefix: str = "") -> list[str]:
    """What the command dispatcher subscribes to: answers and presence of every terminal."""
    return [f"{prefix}gps/v1/+/cmd_result", f"{prefix}gps/v1/+/status"]


def command_topic(terminal_id: str, name: str, prefix: str = "") -> str:
    return f"{prefix}cmd/v1/{terminal_id}/{name}"


def command_filter(prefix: str = "") -> str:
    """Every command to every terminal (the JT/T 808 gateway's subscription)."""
    return f"{prefix}cmd/v1/+/+"


def parse_command_topic(topic: str, prefix: str = "") -> tuple[str, str]:
    """Split ``{prefix}cmd/v1/{terminal_id}/{name}`` into (terminal_id, name).

    Raises:
        PayloadError(reason="bad_topic"): the topic does not follow the contract.
    """
    expected = f"{prefix}cmd/v1/{{terminal_id}}/{{name}}"
    parts = topic[len(prefix) :].split("/") if topic.startswith(prefix) else []
    if len(parts) != 4 or parts[:2] != ["cmd", "v1"] or not parts[2] or not parts[3]:
        raise PayloadError("bad_topic", f"expected {expected}, got {topic!r}")
    return parts[2], parts[3]


def accepted_topic(partition: int, prefix: str = "") -> str:
    """``{prefix}positions/v2/{partition}``: one committed batch's accepted positions."""
    return f"{prefix}positions/v2/{partition}"


def accepted_filter(prefix: str = "") -> str:
    """Every partition's accepted positions."""
    return f"{prefix}positions/v2/+"


def parse_accepted(topic: str, prefix: str = "") -> int:
    """``{prefix}positions/v2/{partition}`` -> partition.

    Raises:
        PayloadError(reason="bad_topic"): anything else.
    """
    parts = topic[len(prefix) :].split("/") if topic.startswith(prefix) else []
    if len(parts) != 3 or parts[:2] != ["positions", "v2"] or not parts[2].isdigit():
        raise PayloadError("bad_topic", f"expected {prefix}positions/v2/PARTITION, got {topic!r}")
    return int(parts[2])


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
    """Split ``{prefix}gps/v1/{terminal_id}/{position|batch|heartbeat|cmd_result|status}``.

    Raises:
        PayloadError(reason="bad_topic"): the topic does not follow the contract.
    """
    expected = f"{prefix}gps/v1/{{terminal_id}}/position|batch|heartbeat|cmd_result|status"
    if not topic.startswith(prefix):
        raise PayloadError("bad_topic", f"expected {expected}, got {topic!r}")
    parts = topic[len(prefix) :].split("/")
    if len(parts) != 4 or parts[0] != "gps" or parts[1] != "v1" or not parts[2]:
        raise PayloadError("bad_topic", f"expected {expected}, got {topic!r}")
    kind = parts[3]
    if kind not in INBOUND_KINDS and kind not in COMMAND_KINDS:
        raise PayloadError("bad_topic", f"expected {expected}, got {topic!r}")
    return InboundTopic(terminal_id=parts[2], kind=kind)  # type: ignore[arg-type]
