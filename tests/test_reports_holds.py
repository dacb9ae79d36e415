"""Legal holds: sealed data survives a retention run; the evidence report is unchanged; CLI."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from test_reports_support import BEIJING, Fix, read_tdrive, store_fixes

from gps_monitor.config import Settings
from gps_monitor.db import holds, holds_cli, registry, retention
from gps_monitor.errors import ConfigurationError, StateError
from web.reports import cli as report_cli
from web.reports import evidence, export

SEAL_START = datetime(2008, 2, 6, 13, 0, tzinfo=BEIJING)
SEAL_END = datetime(2008, 2, 6, 16, 0, tzinfo=BEIJING)


@pytest.fixture
async def taxi(pool: asyncpg.Pool, shared_data: Path) -> int:
    company = await registry.ensure_company(pool, "北京出租汽车公司")
    vehicle = await registry.ensure_vehicle(
        pool, company_id=company.id, plate_number="京B12345", terminal_id="013800000001"
    )
    fixes = read_tdrive(shared_data / "tdrive_beijing_taxi_1.txt")
    await store_fixes(pool, vehicle.id, company.id, vehicle.terminal_id, fixes)
    return vehicle.id


async def test_sealed_window_survives_retention_and_report_digest_is_unchanged(
    pool: asyncpg.Pool, settings: Settings, taxi: int
) -> None:
    before = await evidence.build_for_window(
        pool, taxi, SEAL_START, SEAL_END, settings.reports, generated_by="t"
    )
    in_window = len(before.positions)
    assert in_window > 5
    async with pool.acquire() as conn:
        hold = await holds.seal(
            conn, vehicle_id=taxi, window_start=SEAL_START, window_end=SEAL_END,
            reason="2008-02-06 交通事故", sealed_by="执法人员", case_number="京交2008-001",
        )  # fmt: skip
        assert hold.positions_held == in_window
        assert hold.raw_messages_held == in_window  # one MQTT message per fix
        total = await conn.fetchval("SELECT count(*) FROM positions")
        # everything is older than this cutoff (2008 data): all but the sealed window goes
        dry = await retention.run_retention(conn, cutoff=datetime.now(UTC), dry_run=True)
        assert await conn.fetchval("SELECT count(*) FROM positions") == total
        result = await retention.run_retention(conn, cutoff=datetime.now(UTC))
    assert result.mode == "plain"
    assert dry.positions_deleted == result.positions_deleted == total - in_window
    assert await pool.fetchval("SELECT count(*) FROM positions") == in_window
    assert await pool.fetchval("SELECT count(*) FROM raw_messages") == in_window
    after = await evidence.build_for_window(
        pool, taxi, SEAL_START, SEAL_END, settings.reports, generated_by="t"
    )
    assert after.digest_sha256 == before.digest_sha256
    assert after.legal_holds == (hold.id,)
    assert after.canonical_rows() == before.canonical_rows()

    # even with the live rows gone (as a TimescaleDB chunk drop would do), the held copy
    # still yields the same report
    await pool.execute("DELETE FROM positions")
    await pool.execute("DELETE FROM raw_messages")
    held_only = await evidence.build_for_window(
        pool, taxi, SEAL_START, SEAL_END, settings.reports, generated_by="t"
    )
    assert held_only.digest_sha256 == before.digest_sha256
    assert {p.source for p in held_only.positions} == {"held"}
    rows = export.read_csv_rows(export.render_csv(held_only))
    assert all(len(r[15]) == 64 for r in rows)  # raw digests from the held raw messages

    # released: the held copy goes at the next retention run (window older than the cutoff)
    released = await holds.release(pool, hold.id, released_by="法院", reason="结案")
    assert not released.active
    with pytest.raises(StateError):
        await holds.release(pool, hold.id, released_by="法院", reason="again")
    async with pool.acquire() as conn:
        result = await retention.run_retention(conn, cutoff=datetime.now(UTC))
    assert result.held_positions_deleted == in_window
    assert await pool.fetchval("SELECT count(*) FROM held_positions") == 0


async def test_retention_keeps_data_younger_than_the_cutoff(
    pool: asyncpg.Pool, settings: Settings, taxi: int
) -> None:
    cutoff = datetime(2008, 2, 5, tzinfo=BEIJING)
    older = await pool.fetchval("SELECT count(*) FROM positions WHERE fix_time < $1", cutoff)
    total = await pool.fetchval("SELECT count(*) FROM positions")
    async with pool.acquire() as conn:
        result = await retention.run_retention(conn, cutoff=cutoff)
    assert result.positions_deleted == older > 0
    assert await pool.fetchval("SELECT count(*) FROM positions") == total - older
    assert retention.months_before(datetime(2026, 8, 31, tzinfo=UTC), 6) == datetime(
        2026, 2, 28, tzinfo=UTC
    )


def _parse(module: object, argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)  # type: ignore[attr-defined]
    return parser.parse_args(argv)


async def _in_thread(module: object, args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    return await asyncio.to_thread(module.run, args, settings)  # type: ignore[attr-defined]


async def test_hold_and_report_commands(
    pool: asyncpg.Pool,
    settings: Settings,
    taxi: int,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    seal = _parse(
        holds_cli,
        [
            "seal",
            "--plate",
            "京B12345",
            "--from",
            SEAL_START.isoformat(),
            "--to",
            SEAL_END.isoformat(),
            "--reason",
            "事故",
            "--by",
            "cli",
        ],
    )
    too_late = _parse(holds_cli, ["seal", "--plate", "京B12345", "--from",
                                  SEAL_START.isoformat(), "--to", "9999-01-01T00:00:00+08:00",
                                  "--reason", "事故"])  # fmt: skip
    with pytest.raises(ConfigurationError, match="window_end: expected a time up to now"):
        await _in_thread(holds_cli, too_late, settings)
    assert await _in_thread(holds_cli, seal, settings) == 0
    sealed = json.loads(capsys.readouterr().out)
    assert sealed["positions_held"] > 0 and sealed["active"]
    assert await _in_thread(holds_cli, _parse(holds_cli, ["list", "--active"]), settings) == 0
    assert json.loads(capsys.readouterr().out)["id"] == sealed["id"]

    out = tmp_path / "window.csv"
    args = _parse(
        report_cli,
        [
            "evidence",
            "--vehicle-id",
            str(taxi),
            "--from",
            SEAL_START.isoformat(),
            "--to",
            SEAL_END.isoformat(),
            "--out",
            str(out),
        ],
    )
    assert await _in_thread(report_cli, args, settings) == 0
    printed = capsys.readouterr().out
    rows = export.read_csv_rows(out.read_bytes())
    assert len(rows) == sealed["positions_held"]
    digest = await pool.fetchval("SELECT digest_sha256 FROM report_log")
    assert digest in printed
    kpi_out = tmp_path / "kpi.json"
    args = _parse(
        report_cli, ["kpi", "--from", "2008-02-02", "--to", "2008-02-08", "--out", str(kpi_out)]
    )
    assert await _in_thread(report_cli, args, settings) == 0
    body = json.loads(kpi_out.read_text())
    assert body["county"]["kpis"]["connection_rate"] == 100.0
    assert body["county"]["counts"]["records"] == 564
    bad = _parse(report_cli, ["evidence", "--alarm", "1", "--out", str(tmp_path / "x.doc")])
    with pytest.raises(Exception, match="expected an extension"):
        await _in_thread(report_cli, bad, settings)


async def test_retention_refuses_a_cutoff_inside_the_retention_period_without_force(
    pool: asyncpg.Pool, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    from gps_monitor.cli import main

    company = await registry.ensure_company(pool, "渝运物流")
    vehicle = await registry.ensure_vehicle(
        pool, company_id=company.id, plate_number="渝A00001", terminal_id="013900000001"
    )
    now = datetime.now(UTC)
    recent = [Fix(now.replace(microsecond=0), 29.5, 106.55, 30.0, 0.0)]
    await store_fixes(pool, vehicle.id, company.id, vehicle.terminal_id, recent)

    def cli(*argv: str) -> int:
        return main(["retention", *argv], settings=settings)

    assert await asyncio.to_thread(cli, "--before", "2030-01-01T00:00:00+08:00") == 2
    err = capsys.readouterr().err
    assert "--before: expected at most" in err and "6-month retention period" in err
    assert "got 2030-01-01T00:00:00+08:00" in err and "--force" in err
    assert await pool.fetchval("SELECT count(*) FROM positions") == 1
    # a cutoff before now minus 6 months is accepted; the recent position stays
    assert await asyncio.to_thread(cli, "--before", "2020-01-01T00:00:00+00:00") == 0
    assert await pool.fetchval("SELECT count(*) FROM positions") == 1
    # a naive cutoff is refused on stderr
    assert await asyncio.to_thread(cli, "--before", "2020-01-01T00:00:00") == 2
    assert "--before: expected a time with offset" in capsys.readouterr().err
    # --force deletes what it was asked to
    assert await asyncio.to_thread(cli, "--before", "2030-01-01T00:00:00+08:00", "--force") == 0
    assert await pool.fetchval("SELECT count(*) FROM positions") == 0
