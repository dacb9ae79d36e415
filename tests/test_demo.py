"""``gps-monitor demo --exit-after-replay`` with no configured services: it starts an embedded
PostgreSQL and an in-process broker, replays the shipped Liverpool buses and stores them all."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gps_monitor.demo import demo_file


def test_shipped_demo_data_carries_its_attribution() -> None:
    attribution = (demo_file().parent / "ATTRIBUTION.txt").read_text(encoding="utf-8")
    assert "Open Government Licence v3.0" in attribution
    assert "UK Bus Open Data Service" in attribution


@pytest.mark.slow
def test_demo_exit_after_replay_stores_every_distinct_fix_with_embedded_services(
    tmp_path: Path,
) -> None:
    with demo_file().open(newline="") as f:
        rows = list(csv.DictReader(f))
    distinct = len({(r["vehicle_id"], r["timestamp"]) for r in rows})
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPS_MONITOR_")}
    env["XDG_DATA_HOME"] = str(tmp_path)  # the embedded database's folder, not the user's
    done = subprocess.run(
        [sys.executable, "-m", "gps_monitor.cli", "demo", "--speedup", "0",
         "--exit-after-replay"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "started embedded PostgreSQL" in done.stdout
    assert "started embedded MQTT broker" in done.stdout
    assert f"published {len(rows)} positions ({distinct} distinct fixes); stored {distinct}" in (
        done.stdout
    )
    assert (tmp_path / "gps-monitor" / "postgres" / "PG_VERSION").exists()
    # one line per bus
    assert sum(1 for line in done.stdout.splitlines() if line.strip().startswith("BODS-")) == 8
