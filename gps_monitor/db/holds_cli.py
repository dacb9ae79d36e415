"""``gps-monitor hold seal|list|release``: legal holds (see :mod:`gps_monitor.db.holds`).

gps-monitor hold seal (--vehicle-id N | --plate 京A12345) --from T --to T --reason TEXT
    [--case NO]
gps-monitor hold list [--vehicle-id N] [--active]
gps-monitor hold release HOLD_ID --reason TEXT
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
from datetime import datetime

from gps_monitor.config import Settings
from gps_monitor.db import holds
from gps_monitor.db.pool import connect
from gps_monitor.errors import ConfigurationError, NotFoundError


def _datetime(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"expected a time with offset such as 2026-03-01T08:00:00+08:00, got {text!r}"
        )
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="hold_action", required=True, metavar="ACTION")
    seal = sub.add_parser("seal", help="seal a vehicle's data over a window")
    seal.add_argument("--vehicle-id", type=int)
    seal.add_argument("--plate")
    seal.add_argument("--from", dest="start", required=True, type=_datetime)
    seal.add_argument("--to", dest="end", required=True, type=_datetime)
    seal.add_argument("--reason", required=True)
    seal.add_argument("--case", default=None, help="case / accident number")
    seal.add_argument("--by", default=None)
    lst = sub.add_parser("list", help="list holds (JSON lines)")
    lst.add_argument("--vehicle-id", type=int, default=None)
    lst.add_argument("--active", action="store_true")
    rel = sub.add_parser("release", help="release a hold")
    rel.add_argument("hold_id", type=int)
    rel.add_argument("--reason", required=True)
    rel.add_argument("--by", default=None)


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    by = getattr(args, "by", None) or f"cli:{getpass.getuser()}"
    conn = await connect(settings.database)
    try:
        if args.hold_action == "seal":
            vehicle_id = args.vehicle_id
            if vehicle_id is None:
                if not args.plate:
                    raise ConfigurationError("expected --vehicle-id or --plate")
                rows = await conn.fetch(
                    "SELECT id FROM vehicles WHERE plate_number = $1", args.plate
                )
                if len(rows) != 1:
                    raise NotFoundError(
                        f"plate {args.plate}: expected one vehicle, found {len(rows)}"
                    )
                vehicle_id = rows[0]["id"]
            try:
                hold = await holds.seal(
                    conn, vehicle_id=vehicle_id, window_start=args.start, window_end=args.end,
                    reason=args.reason, sealed_by=by, case_number=args.case,
                )  # fmt: skip
            except ValueError as error:
                raise ConfigurationError(str(error)) from error
            print(json.dumps(hold.to_dict(), ensure_ascii=False))
        elif args.hold_action == "list":
            for hold in await holds.list_holds(
                conn, vehicle_id=args.vehicle_id, active_only=args.active
            ):
                print(json.dumps(hold.to_dict(), ensure_ascii=False))
        else:
            hold = await holds.release(conn, args.hold_id, released_by=by, reason=args.reason)
            print(json.dumps(hold.to_dict(), ensure_ascii=False))
        return 0
    finally:
        await conn.close()


def run(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(_run(args, settings))
