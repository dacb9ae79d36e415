"""``gps-monitor jt808-sim --register`` only creates or updates the simulator's own vehicles, and
the terminals of different track files never share a phone."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest
from test_jt808_server import running_gateway

from gps_monitor.cli import build_parser, main
from gps_monitor.config import Settings
from gps_monitor.db import registry
from gps_monitor.models import PlateColor, VehicleClass
from gps_monitor.tracks import read_track
from ingest.jt808.sim import DEMO_COMPANY, PHONE_BASE, assign_phones, simulate

REAL_TERMINAL = "13800000001"  # the README's deploy example of a real terminal


async def _real_vehicle(pool: asyncpg.Pool) -> None:
    owner = await registry.ensure_company(pool, "渝运物流")
    await registry.ensure_vehicle(
        pool,
        company_id=owner.id,
        plate_number="渝A12345",
        terminal_id=REAL_TERMINAL,
        vehicle_class=VehicleClass.HAZMAT,
        plate_color=PlateColor.YELLOW,
    )


async def _vehicle(pool: asyncpg.Pool, terminal_id: str) -> dict[str, object]:
    row = await pool.fetchrow(
        "SELECT v.plate_number, v.vehicle_class, c.name AS company FROM vehicles v "
        "JOIN companies c ON c.id = v.company_id WHERE v.terminal_id = $1",
        terminal_id,
    )
    assert row is not None
    return dict(row)


async def test_jt808_sim_register_refuses_a_terminal_held_by_another_company_and_changes_nothing(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await _real_vehicle(pool)
    track = tmp_path / "track.csv"
    track.write_text(
        "terminal_id,fix_time,latitude,longitude\n"
        f"{REAL_TERMINAL},2024-01-10T08:00:00+08:00,29.56,106.55\n"
        "sim-2,2024-01-10T08:00:00+08:00,29.56,106.55\n",
        encoding="utf-8",
    )
    argv = ["jt808-sim", str(track), "--format", "csv", "--register", "--port", "9"]
    code = await asyncio.to_thread(main, argv, settings)
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"terminal {REAL_TERMINAL} is held by vehicle 渝A12345" in err
    assert "渝运物流" in err and "Traceback" not in err
    assert await _vehicle(pool, REAL_TERMINAL) == {
        "plate_number": "渝A12345",
        "vehicle_class": "hazmat",
        "company": "渝运物流",
    }
    # refused as a whole: not even the free terminal of the file was registered
    assert await pool.fetchval("SELECT count(*) FROM vehicles") == 1


async def test_jt808_sim_register_of_two_files_leaves_a_real_vehicle_alone_and_tracks_apart(
    settings: Settings, pool: asyncpg.Pool, shared_data: Path
) -> None:
    await _real_vehicle(pool)
    files = {
        "tdrive": shared_data / "tdrive_beijing_taxi_1.txt",
        "bods": shared_data / "bods_liverpool_bus_route14_outbound.csv",
    }
    tracks = {fmt: read_track(path, fmt) for fmt, path in files.items()}
    phones = {
        terminal_id: phone
        for fmt_tracks in tracks.values()
        for terminal_id, phone in assign_phones(
            list(fmt_tracks), protocol="2013", phone_base=PHONE_BASE
        ).items()
    }
    sent = {fmt: sum(len(ps) for ps in t.values()) for fmt, t in tracks.items()}
    async with running_gateway(settings, pool) as (gateway, port):
        for fmt, path in files.items():
            args = build_parser().parse_args(
                ["jt808-sim", str(path), "--format", fmt, "--register", "--port", str(port)]
            )
            assert args.phone_base == PHONE_BASE
            stats = await simulate(args, settings)
            assert (stats.sent, stats.accepted, stats.refused) == (sent[fmt], sent[fmt], 0)
    assert await _vehicle(pool, REAL_TERMINAL) == {
        "plate_number": "渝A12345",
        "vehicle_class": "hazmat",
        "company": "渝运物流",
    }
    # 9 terminals, 9 distinct phones, none of them a README example or a mobile number
    assert len(set(phones.values())) == len(phones) == 9
    assert all(len(p) == 12 and p.startswith("99") for p in phones.values())
    # each terminal registered and authenticated as its own simulated vehicle
    assert gateway.stats.registrations == {0: 9} and gateway.stats.auth_ok == 9
    rows = await pool.fetch(
        "SELECT v.terminal_id, c.name AS company FROM vehicles v "
        "JOIN companies c ON c.id = v.company_id WHERE v.terminal_id <> $1",
        REAL_TERMINAL,
    )
    assert sorted((r["terminal_id"], r["company"]) for r in rows) == sorted(
        (phone, DEMO_COMPANY) for phone in phones.values()
    )
