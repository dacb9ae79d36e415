"""Photo-evidence benchmark (issue 12): N simulated terminals each upload one photo at the same
moment through JT/T 808 0x0801 (sub-packages of 900 bytes, answered by 0x8800 once stored), then
N report an ADAS alarm and upload the same-size photo to the T/JSATL attachment server (0x1210,
0x1211, 16 KiB data frames, 0x1212 -> 0x9212). The gateway runs in its own process (real
PostgreSQL, Mosquitto, media folder); the terminals in this one. Loopback only.

Prints per phase: uploads completed, MB/s of media data (first byte sent to last upload stored),
p50/p99/max upload-to-stored (first packet sent -> the gateway's "complete" answer, which it sends
only after the file is fsynced under its SHA-256 and its row committed), and the gateway's RSS
idle, with the terminals connected, and at its peak during the phase (sampled every 0.2 s).
Memory independent of the file size shows as the same peak for ``--photo-bytes`` 200000 and,
say, 2000000.

    .venv/bin/python benchmarks/media.py --terminals 1000 --photo-bytes 200000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import psutil  # noqa: E402
from jt808 import (  # noqa: E402
    PHONE_BASE,
    bench_plate,
    drop_database,
    percentile,
    prepare_database,
    raise_fd_limit,
    start_gateway,
    wait_port,
)

from ingest.jt808 import jsatl, media_sim  # noqa: E402
from ingest.jt808 import messages as m  # noqa: E402
from ingest.jt808.attachments_sim import adas_report, upload_attachments  # noqa: E402
from ingest.jt808.codec import Frame  # noqa: E402
from ingest.jt808.media import MediaHead  # noqa: E402
from ingest.jt808.media_sim import sim_photo, upload  # noqa: E402
from ingest.jt808.sim import SimCamera, SimTerminal  # noqa: E402


class TimedCamera(SimCamera):
    """Uploads attachments on 0x9208 and records (started, stored) monotonic times."""

    def __init__(
        self, terminal: SimTerminal, times: list[tuple[float, float]], done: asyncio.Event, n: int
    ) -> None:
        super().__init__(terminal)
        self.times, self.done, self.n = times, done, n

    def take(self, frame: Frame) -> bool:
        if frame.header.msg_id != jsatl.MSG_ATTACHMENT_REQUEST:
            return super().take(frame)
        started = time.monotonic()

        async def run() -> None:
            await upload_attachments(self, frame)
            if self.attachments_sent:
                self.times.append((started, time.monotonic()))
                if len(self.times) >= self.n:
                    self.done.set()

        self._start(run())
        return True


class RssSampler:
    def __init__(self, process: psutil.Process) -> None:
        self.process = process
        self.peak = 0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            self.peak = max(self.peak, self.process.memory_info().rss)
            await asyncio.sleep(0.2)

    def __enter__(self) -> RssSampler:
        self.peak = self.process.memory_info().rss
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *_: object) -> None:
        if self._task is not None:
            self._task.cancel()


def summary(name: str, times: list[tuple[float, float]], size: int, wanted: int) -> str:
    if not times:
        return f"{name}: 0 of {wanted} uploads completed"
    first = min(t[0] for t in times)
    last = max(t[1] for t in times)
    latency = [end - start for start, end in times]
    mb = len(times) * size / 1e6
    return (
        f"{name}: {len(times)} of {wanted} uploads stored, {mb:.0f} MB in {last - first:.1f} s "
        f"= {mb / (last - first):.1f} MB/s; upload-to-stored p50 {percentile(latency, 50):.2f} s, "
        f"p99 {percentile(latency, 99):.2f} s, max {max(latency):.2f} s"
    )


async def run(args: argparse.Namespace) -> None:
    raise_fd_limit()
    media_sim.REPLY_TIMEOUT_S = args.timeout_s  # all upload at once: the last wait long
    name = f"gpsm_bench_media_{os.getpid()}"
    url = await prepare_database(args.admin_url, name, args.terminals)
    folder = Path(tempfile.mkdtemp(prefix="gpsm-media-bench-"))
    env = {
        **os.environ,
        "GPS_MONITOR_DATABASE_URL": url,
        "GPS_MONITOR_MQTT_HOST": args.mqtt_host,
        "GPS_MONITOR_MQTT_PORT": str(args.mqtt_port),
        "GPS_MONITOR_MQTT_TOPIC_PREFIX": f"bench-media-{os.getpid()}/",
        "GPS_MONITOR_JT808_HOST": "127.0.0.1",
        "GPS_MONITOR_JT808_PORT": str(args.port),
        "GPS_MONITOR_JT808_CLIENT_ID": f"bench-media-gw-{os.getpid()}",
        "GPS_MONITOR_JT808_STATS_INTERVAL_S": "3600",
        "GPS_MONITOR_ATTACHMENTS_HOST": "127.0.0.1",
        "GPS_MONITOR_ATTACHMENTS_PORT": str(args.port + 1),
        "GPS_MONITOR_ATTACHMENTS_READ_TIMEOUT_S": "300",
        "GPS_MONITOR_MEDIA_DIRECTORY": str(folder),
        "GPS_MONITOR_MEDIA_PACKET_TIMEOUT_S": "300",
        "GPS_MONITOR_LOG_LEVEL": "WARNING",
    }
    runner = (
        "import argparse,logging\n"
        "from gps_monitor.config import Settings\n"
        "from ingest.jt808 import cli\n"
        "logging.basicConfig(level='WARNING')\n"
        "cli.run(argparse.Namespace(host=None,port=None,no_upgrade=True,forget_terminal=None),"
        "Settings())\n"
    )
    gateway = start_gateway(runner, env, args.gateway_log)
    terminals: list[SimTerminal] = []
    readers: list[asyncio.Task[None]] = []
    try:
        await wait_port(args.port)
        await wait_port(args.port + 1)
        gw = psutil.Process(gateway.pid)
        await asyncio.sleep(1)
        rss_idle = gw.memory_info().rss
        photo = sim_photo(args.photo_bytes, seed=1)
        gate = asyncio.Semaphore(100)
        attachment_times: list[tuple[float, float]] = []
        all_stored = asyncio.Event()

        async def connect(i: int) -> None:
            terminal = SimTerminal(str(PHONE_BASE + i), reply_timeout_s=600)
            terminal.camera = TimedCamera(terminal, attachment_times, all_stored, args.terminals)
            own = photo + i.to_bytes(4, "big")  # distinct contents (trailing bytes after EOI)
            terminal.camera.attachments = [("00_64_0101_0_{number}.jpg", own)]
            async with gate:
                await terminal.connect("127.0.0.1", args.port)
                await terminal.register(bench_plate(i), 2)
                if await terminal.authenticate() != m.RESULT_OK:
                    raise RuntimeError(f"terminal {i}: authentication refused")
            terminals.append(terminal)

        await asyncio.gather(*(connect(i) for i in range(args.terminals)))
        rss_connected = gw.memory_info().rss
        print(
            f"machine: {psutil.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
            f"{len(terminals)} terminals connected; photo {len(photo)} bytes; gateway RSS "
            f"{rss_idle / 2**20:.0f} MB idle, {rss_connected / 2**20:.0f} MB connected",
            flush=True,
        )

        async def read_forever(terminal: SimTerminal) -> None:
            with contextlib.suppress(Exception):
                while True:
                    await terminal.read_frame()  # 0x8800 / 0x9208 go to the camera

        readers = [asyncio.create_task(read_forever(t)) for t in terminals]
        photo_times: list[tuple[float, float]] = []

        async def photo_upload(i: int, terminal: SimTerminal) -> None:
            started = time.monotonic()
            own = photo + i.to_bytes(4, "big")
            if await upload(terminal, terminal.camera, MediaHead(i + 1, 0, 0, 1, 1), own):
                photo_times.append((started, time.monotonic()))

        with RssSampler(gw) as sampler:
            await asyncio.gather(
                *(photo_upload(i, t) for i, t in enumerate(terminals)), return_exceptions=True
            )
        print(summary("0x0801", photo_times, len(photo), len(terminals)))
        print(f"  gateway RSS peak {sampler.peak / 2**20:.0f} MB", flush=True)

        with RssSampler(gw) as sampler:
            await asyncio.gather(
                *(t.send_location(adas_report(f"B{i:06d}", i, 1)) for i, t in enumerate(terminals)),
                return_exceptions=True,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(all_stored.wait(), args.timeout_s)
        print(summary("attachment server", attachment_times, len(photo), len(terminals)))
        print(f"  gateway RSS peak {sampler.peak / 2**20:.0f} MB", flush=True)
        stored = sum(1 for p in (folder / "objects").rglob("*") if p.is_file())
        print(f"  {stored} files in the store")
    finally:
        for task in readers:
            task.cancel()
        for terminal in terminals:
            await terminal.close()
        gateway.terminate()
        with contextlib.suppress(subprocess_timeout()):
            gateway.wait(10)
        await drop_database(args.admin_url, name)
        shutil.rmtree(folder, ignore_errors=True)


def subprocess_timeout() -> type[Exception]:
    import subprocess

    return subprocess.TimeoutExpired


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--terminals", type=int, default=1000)
    parser.add_argument("--photo-bytes", type=int, default=200_000)
    parser.add_argument("--port", type=int, default=18808)
    parser.add_argument("--timeout-s", type=float, default=600)
    parser.add_argument("--mqtt-host", default="127.0.0.1")
    parser.add_argument("--mqtt-port", type=int, default=1883)
    parser.add_argument("--gateway-log", default="/tmp/bench-media-gateway.log")
    parser.add_argument(
        "--admin-url",
        default=os.environ.get(
            "GPS_MONITOR_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
