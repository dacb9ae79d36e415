"""`gps-monitor report` mistakes (unknown company, unwritable --out) and the same through the API:
exit 2 / 404 with a clear message, and nothing logged in report_log."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path

import asyncpg
import pytest
from test_reports_support import BEIJING, Fix, insert_alarm, store_fixes
from web_helpers import make_world, rest_client

from gps_monitor.cli import main
from gps_monitor.config import Settings


async def _report_count(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM report_log"))


async def test_kpi_report_of_an_unknown_company_exits_2_and_logs_nothing(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["report", "kpi", "--from", "2026-01-01", "--to", "2026-01-31", "--company", "999",
            "--out", str(tmp_path / "k.json")]  # fmt: skip
    assert await asyncio.to_thread(main, argv, settings) == 2
    assert "company 999: expected an existing company, found none" in capsys.readouterr().err
    assert not (tmp_path / "k.json").exists()
    assert await _report_count(pool) == 0


async def test_kpi_api_of_an_unknown_company_answers_404(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    world = await make_world(pool, settings)
    async with rest_client(settings) as client:
        r = await client.get(
            "/api/reports/kpi",
            params={"from": "2026-01-01", "to": "2026-01-31", "company_id": 999},
            headers=world.auth("bureau"),
        )
    assert r.status_code == 404, r.text
    assert r.json()["detail"] == "company 999: expected an existing company, found none"
    assert await _report_count(pool) == 0


@pytest.mark.parametrize("out", ["missing/dir/x.pdf", "x.pdf/"])
async def test_evidence_report_to_an_unusable_path_exits_2_before_logging(
    out: str,
    settings: Settings,
    pool: asyncpg.Pool,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    world = await make_world(pool, settings)
    vehicle, company = world.vehicles_a[0], world.company_a
    start = datetime(2026, 3, 2, 10, 0, tzinfo=BEIJING)
    fixes = [Fix(start.replace(minute=m), 29.5 + m / 1000, 106.55, 70.0, 0.0) for m in range(5)]
    await store_fixes(pool, vehicle, company, world.terminals[vehicle], fixes)
    alarm = await insert_alarm(
        pool, vehicle_id=vehicle, company_id=company, alarm_type="overspeed",
        started_at=start, ended_at=start.replace(minute=4), details={"limit_kmh": 60.0},
    )  # fmt: skip
    (tmp_path / "x.pdf").mkdir()
    path = tmp_path / out
    argv = ["report", "evidence", "--alarm", str(alarm), "--out", str(path)]
    assert await asyncio.to_thread(main, argv, settings) == 2
    err = capsys.readouterr().err
    assert f"--out {path}: expected" in err and "Traceback" not in err
    assert await _report_count(pool) == 0
    # the same report into a usable path works and is logged once
    good = ["report", "evidence", "--alarm", str(alarm), "--out", str(tmp_path / "ok.pdf")]
    assert await asyncio.to_thread(main, good, settings) == 0
    assert await _report_count(pool) == 1


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--alarm", "999999999999999999999"),
        ("--alarm", "0"),
        ("--alarm", "x"),
        ("--vehicle-id", "9223372036854775808"),
        ("--plate-color", "99999"),
    ],
)
async def test_evidence_report_id_out_of_the_database_range_exits_2_without_traceback(
    settings: Settings,
    pool: asyncpg.Pool,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    option: str,
    value: str,
) -> None:
    argv = ["report", "evidence", option, value, "--out", str(tmp_path / "x.pdf")]
    with pytest.raises(SystemExit) as exit_:
        await asyncio.to_thread(main, argv, settings)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}: expected" in err and repr(value) in err
    assert "Traceback" not in err
    assert await _report_count(pool) == 0


async def test_kpi_report_company_out_of_the_database_range_exits_2(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["report", "kpi", "--from", "2026-01-01", "--to", "2026-01-31",
            "--company", "99999999999999999999", "--out", str(tmp_path / "k.json")]  # fmt: skip
    with pytest.raises(SystemExit) as exit_:
        await asyncio.to_thread(main, argv, settings)
    assert exit_.value.code == 2
    assert "expected an id from 1 to 9223372036854775807" in capsys.readouterr().err
