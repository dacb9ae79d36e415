"""``gps-monitor geofence ...`` and ``gps-monitor route ...``: manage geofences and routes.

    geofence import FILE.geojson      validate every feature, then save all (or nothing)
    geofence export [FILE]            GeoJSON FeatureCollection to FILE or stdout
    geofence assign ID PLATE...       assign to vehicles by plate number (--replace to reset)
    geofence list                     one line per geofence
    geofence delete ID
    route ...                         the same for routes (features with kind "route")

``import`` on the ``geofence`` command also accepts routes in the same file (and vice versa):
every feature is saved where its ``kind`` says. Exit 2 with a clear message on invalid input.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from gps_monitor.config import Settings
from gps_monitor.db import geofences as store
from gps_monitor.db.pool import connect
from gps_monitor.errors import GeometryError
from gps_monitor.geofences import parse_geojson, to_geojson


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    imp = sub.add_parser("import", help="import a GeoJSON FeatureCollection")
    imp.add_argument("file")
    exp = sub.add_parser("export", help="export as GeoJSON")
    exp.add_argument("file", nargs="?", default=None)
    assign = sub.add_parser("assign", help="assign to vehicles by plate number")
    assign.add_argument("id")
    assign.add_argument("plates", nargs="+")
    assign.add_argument("--replace", action="store_true", help="drop existing assignments")
    sub.add_parser("list", help="list")
    delete = sub.add_parser("delete", help="delete")
    delete.add_argument("id")


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    kind: store.Kind = "route" if args.command == "route" else "geofence"
    if args.action == "import":
        try:
            data = json.loads(await asyncio.to_thread(Path(args.file).read_text, encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
            raise GeometryError(
                f"{args.file}: expected a readable GeoJSON file ({error})"
            ) from None
        fences, routes = parse_geojson(data)
    conn = await connect(settings.database)
    try:
        if args.action == "import":
            async with conn.transaction():
                await store.save_geofences(conn, fences)
                await store.save_routes(conn, routes)
            print(f"imported {len(fences)} geofence(s) and {len(routes)} route(s)")
        elif args.action == "export":
            fences = await store.load_geofences(conn) if kind == "geofence" else []
            routes = await store.load_routes(conn) if kind == "route" else []
            text = json.dumps(to_geojson(fences, routes), ensure_ascii=False, indent=1)
            if args.file:
                await asyncio.to_thread(Path(args.file).write_text, text + "\n", encoding="utf-8")
            else:
                sys.stdout.write(text + "\n")
        elif args.action == "assign":
            ids = await store.assign(conn, kind, args.id, args.plates, replace=args.replace)
            print(f"{kind} {args.id}: assigned to {len(ids)} vehicle(s)")
        elif args.action == "list":
            if kind == "geofence":
                for f in await store.load_geofences(conn):
                    print(
                        f"{f.id}\t{f.kind}\t{f.name}\t{f.geometry.geom_type}\t"
                        f"vehicles={len(f.vehicle_ids) or 'all'}"
                    )
            else:
                for r in await store.load_routes(conn):
                    print(
                        f"{r.id}\t{r.name}\tcorridor_m={r.corridor_m}\t"
                        f"vehicles={len(r.vehicle_ids)}"
                    )
        else:
            await store.delete(conn, kind, args.id)
            print(f"deleted {kind} {args.id}")
        return 0
    finally:
        await conn.close()


def run(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(_run(args, settings))
