"""The worker logs, at the end of each interval with traffic, the figures of that interval."""

from __future__ import annotations

import logging
import re

import asyncpg
import pytest
from ingest_helpers import count_probe, position_json, publish_raw, running_worker, wait_for

from gps_monitor.config import Settings
from gps_monitor.db import registry
from ingest.worker import IngestWorker

TOPIC = "gps/v1/013800000088/position"


def _interval_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("ingest, last")]


async def test_each_stats_line_counts_only_its_own_interval(
    settings: Settings, pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setattr(IngestWorker, "REPORT_INTERVAL_S", 0.2, raising=False)
    caplog.set_level(logging.INFO, logger="ingest.worker")
    company = await registry.ensure_company(pool, "Stats test company")
    await registry.ensure_vehicle(
        pool, company_id=company.id, plate_number="渝A00088", terminal_id="013800000088"
    )
    t = "2026-01-26T08:00:{:02d}+08:00"
    async with running_worker(settings):
        await publish_raw(settings, [(TOPIC, position_json(t.format(s), 29.56, 106.55))
                                     for s in (0, 10, 20)])  # fmt: skip
        await wait_for(count_probe(pool, "SELECT count(*) FROM positions"), lambda n: n >= 3)
        await wait_for(lambda: _probe(caplog), lambda lines: len(lines) >= 1)
        await publish_raw(settings, [(TOPIC, position_json(t.format(s), 29.56, 106.55))
                                     for s in (30, 40)])  # fmt: skip
        await wait_for(count_probe(pool, "SELECT count(*) FROM positions"), lambda n: n >= 5)
        await wait_for(lambda: _probe(caplog), lambda lines: len(lines) >= 2)
    lines = _interval_lines(caplog)
    stored = [int(m[1]) for line in lines if (m := re.search(r"(\d+) positions stored", line))]
    assert len(stored) == len(lines) >= 2
    assert sum(stored) == 5, (
        lines
    )  # per interval: accumulated since start they would add up to more
    assert all(re.search(r"\(\d+/s\)", line) for line in lines)  # rates of the interval


async def _probe(caplog: pytest.LogCaptureFixture) -> list[str]:
    return _interval_lines(caplog)
