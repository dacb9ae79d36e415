"""Which channels an alarm event goes to: subscription rules, pure.

A subscription matches a notification when it is enabled, its channel is enabled and valid, and
each of its filters lets the alarm through: event (opened/closed), company (the subscription's
own filter, and for an operator's subscription always the operator's company), alarm type,
vehicle, and level (the alarm's level is ``min_level`` or more urgent, i.e. a number <= it).

Quiet hours (local time, ``notify.timezone``): a matching subscription inside its quiet window
does not send, **except for level 1 (紧急)**, which always goes out (README: a choice, the issue
is silent; SOS or a hazmat vehicle in a forbidden zone cannot wait for the morning). A channel
reached by several subscriptions sends when any one of them is outside its quiet hours; when all
of them are quiet, the delivery is recorded as ``suppressed`` and not sent.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import time

from gps_monitor.db.notify import Subscription
from notify.message import Notification


def in_window(now: time, start: time, end: time) -> bool:
    """Whether local ``now`` is in [start, end); a window with end <= start crosses midnight
    (22:00-07:00); start == end is empty."""
    if start == end:
        return False
    if start < end:
        return start <= now < end
    return now >= start or now < end


def matches(sub: Subscription, note: Notification) -> bool:
    """Whether ``sub``'s filters let ``note`` through (quiet hours aside)."""
    if not sub.enabled or note.event not in sub.events or note.level > sub.min_level:
        return False
    if sub.owner_company_id is not None and note.company_id != sub.owner_company_id:
        return False
    if sub.company_id is not None and note.company_id != sub.company_id:
        return False
    if sub.alarm_types is not None and note.alarm_type not in sub.alarm_types:
        return False
    return sub.vehicle_ids is None or note.vehicle_id in sub.vehicle_ids


def is_quiet(sub: Subscription, note: Notification, local_now: time) -> bool:
    """Whether ``sub`` keeps quiet for ``note`` now (never for level 1)."""
    if note.level == 1 or sub.quiet_start_local is None or sub.quiet_end_local is None:
        return False
    return in_window(local_now, sub.quiet_start_local, sub.quiet_end_local)


def route(
    subscriptions: Iterable[Subscription],
    channel_ids: set[int],
    note: Notification,
    local_now: time,
) -> dict[int, bool]:
    """``{channel_id: send}`` for every usable channel (in ``channel_ids``) some subscription
    routes ``note`` to; ``send`` False = every matching subscription is in quiet hours."""
    out: dict[int, bool] = {}
    for sub in subscriptions:
        if sub.channel_id not in channel_ids or not matches(sub, note):
            continue
        out[sub.channel_id] = out.get(sub.channel_id, False) or not is_quiet(sub, note, local_now)
    return out
