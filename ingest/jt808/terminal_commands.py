"""The gateway's side of the terminal commands of :mod:`gps_monitor.command_kinds`: each command
name -> the JT/T 808 message sent (:data:`ENCODERS`, with the message ids each may send in
:data:`SENT_IDS`: a 0x0001 naming such a message answers the command); answers that carry data
(0x0104, 0x0201) name the request's serial too (:mod:`ingest.jt808.uplink`).

| name | sent | answered by |
|---|---|---|
| ``query_params`` | 0x8104 (all), 0x8106 (some ids) | 0x0104 -> body: the parameter list |
| ``set_params`` | 0x8103 | 0x0001 |
| ``query_position`` | 0x8201 | 0x0201 -> body: the position (also published as a position) |
| ``track`` | 0x8202 | 0x0001 |
| ``terminal_control`` | 0x8105 (4 reset, 5 factory reset) | 0x0001 |
| ``pass_through`` | 0x8900 | 0x0001 (if the terminal answers at all; else it expires) |

A body the gateway cannot encode raises (CommandError, FrameError or ValueError): the command
is answered result 2 (bad message). The API checks the same bodies first, so that only happens
for a command published on ``cmd/v1`` by something else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gps_monitor import command_kinds as kinds
from gps_monitor.commands import Command
from gps_monitor.terminal_params import check_settings, names_to_ids
from ingest.jt808 import misc, query
from ingest.jt808 import params as p

BodyEncoder = Callable[[dict[str, Any], bool], tuple[int, bytes]]  # (body, is_2019) -> (id, body)


def encode_query_params(body: dict[str, Any], is_2019: bool) -> tuple[int, bytes]:
    model = kinds.QueryParamsBody.model_validate(body)
    ids = names_to_ids(model.names) + list(model.ids)
    if not ids:
        return p.MSG_QUERY_PARAMS, b""
    return p.MSG_QUERY_SOME_PARAMS, p.encode_query_some(list(dict.fromkeys(ids)))


def encode_set_params(body: dict[str, Any], is_2019: bool) -> tuple[int, bytes]:
    model = kinds.SetParamsBody.model_validate(body)
    return p.MSG_SET_PARAMS, p.encode_items(p.setting_items(check_settings(model.params)))


def encode_query_position(body: dict[str, Any], is_2019: bool) -> tuple[int, bytes]:
    kinds.QueryPositionBody.model_validate(body)
    return query.MSG_QUERY_POSITION, b""


def encode_track(body: dict[str, Any], is_2019: bool) -> tuple[int, bytes]:
    model = kinds.TrackBody.model_validate(body)
    return query.MSG_TRACK, query.encode_track(model.interval_s, model.duration_s)


def encode_terminal_control(body: dict[str, Any], is_2019: bool) -> tuple[int, bytes]:
    model = kinds.TerminalControlBody.model_validate(body)
    word = kinds.CONTROL_ACTIONS[model.action]
    return misc.MSG_TERMINAL_CONTROL, misc.encode_terminal_control(word)


def encode_pass_through(body: dict[str, Any], is_2019: bool) -> tuple[int, bytes]:
    model = kinds.PassThroughBody.model_validate(body)
    content = bytes.fromhex(model.content_hex)
    return misc.MSG_PASS_THROUGH_DOWN, misc.encode_pass_through(model.pass_type, content)


BODY_ENCODERS: dict[str, BodyEncoder] = {
    kinds.QUERY_PARAMS: encode_query_params,
    kinds.SET_PARAMS: encode_set_params,
    kinds.QUERY_POSITION: encode_query_position,
    kinds.TRACK: encode_track,
    kinds.TERMINAL_CONTROL: encode_terminal_control,
    kinds.PASS_THROUGH: encode_pass_through,
}

SENT_IDS: dict[str, tuple[int, ...]] = {
    kinds.QUERY_PARAMS: (p.MSG_QUERY_PARAMS, p.MSG_QUERY_SOME_PARAMS),
    kinds.SET_PARAMS: (p.MSG_SET_PARAMS,),
    kinds.QUERY_POSITION: (query.MSG_QUERY_POSITION,),
    kinds.TRACK: (query.MSG_TRACK,),
    kinds.TERMINAL_CONTROL: (misc.MSG_TERMINAL_CONTROL,),
    kinds.PASS_THROUGH: (misc.MSG_PASS_THROUGH_DOWN,),
}


def command_encoder(name: str) -> Callable[[Command, bool], tuple[int, bytes]]:
    """The downlink's encoder of ``name``: (command, is_2019) -> (message id, body)."""
    encode = BODY_ENCODERS[name]
    return lambda command, is_2019: encode(command.body, is_2019)


ENCODERS: dict[str, Callable[[Command, bool], tuple[int, bytes]]] = {
    name: command_encoder(name) for name in BODY_ENCODERS
}
