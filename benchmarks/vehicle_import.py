"""Benchmark: bulk vehicle registration (POST /api/vehicle-import) of a county-sized file.

    .venv/bin/python -m benchmarks.vehicle_import [--rows 5000] [--companies 33]

Against the real PostgreSQL (GPS_MONITOR_TEST_DATABASE_URL, default 127.0.0.1): a scratch
database (dropped at the end), migrated (plain mode), ``--companies`` companies and a bureau
user. The app runs in-process (httpx ASGI transport, no network). One CSV and one .xlsx of
``--rows`` vehicles (Chinese headers and names, 2 % refused rows: a bad colour). Prints the wall
time of: the CSV preview, the CSV import (all new), the CSV import again (all unchanged), the
.xlsx preview, and the size of each file.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import time

import asyncpg
import httpx
from openpyxl import Workbook

from gps_monitor.config import DatabaseSettings, Settings
from gps_monitor.db import migrate, users
from gps_monitor.db.pool import init_connection
from gps_monitor.vehicle_import import TEMPLATE_HEADERS
from web.app import create_app

ADMIN_URL = os.environ.get(
    "GPS_MONITOR_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
CLASSES = ("客运班车", "旅游包车", "危险货物运输车", "重型货车", "普通货车")


def _url(name: str) -> str:
    return ADMIN_URL.rpartition("/")[0] + "/" + name


def _rows(count: int, companies: int) -> list[list[str]]:
    return [
        [f"川A{i:05d}", "紫" if i % 50 == 7 else "黄色", CLASSES[i % 5], f"0139{i:08d}",
         "" if i % 3 else "60", f"运输企业{i % companies:03d}"]
        for i in range(count)
    ]  # fmt: skip


def _csv(rows: list[list[str]]) -> bytes:
    return ("\ufeff" + "\r\n".join(",".join(r) for r in [list(TEMPLATE_HEADERS), *rows])).encode()


def _xlsx(rows: list[list[str]]) -> bytes:
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(list(TEMPLATE_HEADERS))
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


async def _post(client: httpx.AsyncClient, body: bytes, token: str, commit: bool) -> str:
    t0 = time.perf_counter()
    r = await client.post(
        "/api/vehicle-import",
        params={"commit": "true"} if commit else {},
        content=body,
        headers={"Authorization": f"Bearer {token}"},
    )
    elapsed = time.perf_counter() - t0
    r.raise_for_status()
    counts = r.json()["counts"]
    return f"{elapsed:6.2f} s  {counts}"


async def main(args: argparse.Namespace) -> None:
    name = f"gpsm_bench_import_{os.getpid()}"
    admin = await asyncpg.connect(ADMIN_URL)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        db = DatabaseSettings(url=_url(name), timescale="off")
        conn = await asyncpg.connect(db.url)
        await init_connection(conn)
        await migrate.upgrade(conn, db)
        for c in range(args.companies):
            await conn.execute("INSERT INTO companies (name) VALUES ($1)", f"运输企业{c:03d}")
        settings = Settings(database=db)
        user = await users.create_user(conn, "chief", "bench-password-123", "bureau")
        token, _ = await users.issue_token(
            conn, user, settings.web.secret_key, settings.web.token_lifetime_s
        )
        await conn.close()
        rows = _rows(args.rows, args.companies)
        csv_body, xlsx_body = _csv(rows), _xlsx(rows)
        print(f"{args.rows:,} rows: CSV {len(csv_body) / 1e6:.2f} MB, "
              f"xlsx {len(xlsx_body) / 1e6:.2f} MB")  # fmt: skip
        app = create_app(settings, live_feed=False)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://b", timeout=600
            ) as client:
                print("CSV preview          ", await _post(client, csv_body, token, False))
                print("CSV import (all new) ", await _post(client, csv_body, token, True))
                print("CSV import again     ", await _post(client, csv_body, token, True))
                print("xlsx preview         ", await _post(client, xlsx_body, token, False))
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--companies", type=int, default=33)
    asyncio.run(main(parser.parse_args()))
