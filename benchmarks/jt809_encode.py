"""JT/T 809 encoding figures: how fast one core turns accepted positions into 0x1202 frames
and 0x1203 replays (codec only: no sockets, no database). Prints figures; asserts nothing.

    .venv/bin/python benchmarks/jt809_encode.py [--positions 20000] [--encrypt]

The end-to-end figures (p99 accepted -> 0x1202 on the wire at 10,000 vehicles, the replay
after a 10-minute outage, the service's CPU and RSS) are measured by benchmarks/jt809.py.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta

from gps_monitor.models import Position
from jt809 import messages as m
from jt809.codec import EncryptionKeys, FrameCodec


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--positions", type=int, default=20000)
    parser.add_argument("--encrypt", action="store_true")
    args = parser.parse_args()
    keys = EncryptionKeys(30000000, 20000000, 20000000)
    codec = FrameCodec(2011, 20180920, keys=keys, encrypt=args.encrypt)
    start = datetime(2026, 1, 26, tzinfo=UTC)
    positions = [
        Position("t", start + timedelta(seconds=i), 29.56 + i * 1e-6, 106.55, 60.0, 90.0)
        for i in range(args.positions)
    ]
    began = time.perf_counter()
    for serial, position in enumerate(positions):
        data = m.encode_gnss(m.gnss_from_position(position))
        body = m.encode_vehicle_message(m.VehicleMessage("渝A80901", 1, 0x1202, data))
        codec.encode(m.MSG_VEHICLE_DYNAMIC, body, serial, encrypt_key=serial)
    live_s = time.perf_counter() - began
    began = time.perf_counter()
    for serial in range(0, len(positions), 5):
        gnss = [m.gnss_from_position(p) for p in positions[serial : serial + 5]]
        body = m.encode_vehicle_message(
            m.VehicleMessage("渝A80901", 1, 0x1203, m.encode_reupload(gnss))
        )
        codec.encode(m.MSG_VEHICLE_DYNAMIC, body, serial, encrypt_key=serial)
    replay_s = time.perf_counter() - began
    mode = "encrypted" if args.encrypt else "plain"
    print(f"0x1202 ({mode}): {args.positions / live_s:,.0f} frames/s")
    print(f"0x1203 ({mode}, 5 per frame): {args.positions / replay_s:,.0f} positions/s")


if __name__ == "__main__":
    main()
