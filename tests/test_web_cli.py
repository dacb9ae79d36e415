"""`gps-monitor user create`, the demo's web service and its users, on the real database."""

from __future__ import annotations

import asyncio
import socket
import sys

import asyncpg
import httpx
import pytest

from gps_monitor.cli import main
from gps_monitor.config import Settings
from gps_monitor.db import users
from gps_monitor.db.registry import ensure_company
from web.service import _port_free, ensure_demo_users, serve


async def test_user_create_command_hashes_and_scopes(
    settings: Settings, pool: asyncpg.Pool, capsys: pytest.CaptureFixture[str]
) -> None:
    company = await ensure_company(pool, "渝运物流")

    def cli(*argv: str) -> int:
        return main(list(argv), settings=settings)

    code = await asyncio.to_thread(
        cli, "user", "create", "op1", "--role", "operator", "--company", "渝运物流",
        "--password", "secret-pass-1",
    )  # fmt: skip
    assert code == 0
    user = await users.authenticate(pool, "op1", "secret-pass-1")
    assert user is not None and user.role == "operator" and user.company_id == company.id
    # generated password is printed once and works
    assert await asyncio.to_thread(cli, "user", "create", "chief", "--role", "bureau") == 0
    out = capsys.readouterr().out
    password = out.strip().splitlines()[-1].rsplit("password: ", 1)[1]
    assert await users.authenticate(pool, "chief", password) is not None
    # bad input: exit 2 with the reason
    assert await asyncio.to_thread(cli, "user", "create", "op2", "--role", "operator") == 2
    assert await asyncio.to_thread(
        cli, "user", "create", "op3", "--role", "operator", "--company", "无此公司",
        "--password", "secret-pass-1",
    ) == 2  # fmt: skip
    assert (
        await asyncio.to_thread(
            cli, "user", "create", "op1", "--role", "bureau", "--password", "secret-pass-1"
        )
        == 2
    )
    assert "already exists" in capsys.readouterr().err


async def test_demo_service_serves_the_map_with_one_user_per_role(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    credentials = await ensure_demo_users(settings, "Liverpool demo buses (BODS, OGL v3.0)")
    assert [role for _, role, _ in credentials] == ["bureau", "operator", "enforcement"]
    again = await ensure_demo_users(settings, "Liverpool demo buses (BODS, OGL v3.0)")
    assert [p for *_, p in again] != [p for *_, p in credentials]  # fresh passwords each run
    ready = asyncio.Event()
    bound: dict[str, str] = {}
    task = asyncio.create_task(serve(settings, ready, port=0, bound=bound))
    await asyncio.wait_for(ready.wait(), 20)
    try:
        async with httpx.AsyncClient(base_url=bound["address"]) as http:
            assert (await http.get("/map")).status_code == 200
            for username, role, password in again:
                r = await http.post(
                    "/api/auth/login", json={"username": username, "password": password}
                )
                assert r.status_code == 200 and r.json()["user"]["role"] == role
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_web_command_serves_and_refuses_insecure_production(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    import socket
    import subprocess

    from ingest_helpers import start_cli, worker_env

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = start_cli(["web", "--port", str(port)], settings, stdout=subprocess.DEVNULL)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            for _ in range(100):
                try:
                    r = await http.get("/api/config")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
            assert r.status_code == 200 and r.json()["tile_crs"] == "wgs84"
            assert (await http.get("/api/vehicles")).status_code == 401
    finally:
        proc.terminate()
        await asyncio.to_thread(proc.wait, 10)
    env = worker_env(settings) | {"GPS_MONITOR_ENVIRONMENT": "production"}
    refused = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "gps_monitor.cli", "web", "--port", str(port)],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode == 2 and "secret_key" in refused.stderr


@pytest.mark.parametrize("port", ["99999", "0", "-1", "abc"])
def test_web_command_refuses_a_port_outside_1_to_65535(
    port: str, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["web", "--port", port], settings=settings)
    assert exit_.value.code == 2
    assert f"--port: expected 1-65535, got {port}" in capsys.readouterr().err


async def test_web_command_believes_forwarded_for_only_from_the_configured_proxies(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """`gps-monitor web` takes its trusted proxies from GPS_MONITOR_WEB_FORWARDED_ALLOW_IPS.

    The README told operators to pass `--forwarded-allow-ips`, which `gps-monitor web` does not
    accept, and the app ignored any setting: uvicorn's built-in default (127.0.0.1) was always
    believed. Here the only trusted proxy is 10.255.255.1, so logins from 127.0.0.1 with a
    different made-up X-Forwarded-For each all count under 127.0.0.1 and the address locks."""
    import socket
    import subprocess

    from ingest_helpers import worker_env

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = worker_env(settings) | {
        "GPS_MONITOR_WEB_FORWARDED_ALLOW_IPS": "10.255.255.1",
        "GPS_MONITOR_WEB_LOGIN_ADDRESS_ATTEMPTS": "2",
        "GPS_MONITOR_WEB_LOGIN_ACCOUNT_ATTEMPTS": "100",
    }
    proc = await asyncio.to_thread(
        subprocess.Popen,
        [sys.executable, "-m", "gps_monitor.cli", "web", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            for _ in range(100):
                try:
                    await http.get("/api/config")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
            codes = [
                (
                    await http.post(
                        "/api/auth/login",
                        json={"username": f"nobody{i}", "password": "wrong"},
                        headers={"X-Forwarded-For": f"203.0.113.{i + 1}"},
                    )
                ).status_code
                for i in range(3)
            ]
        assert codes == [401, 401, 429]
    finally:
        proc.terminate()
        await asyncio.to_thread(proc.wait, 10)


def test_a_port_left_in_time_wait_is_free_and_a_listening_one_is_not() -> None:
    """The demo's web port check binds as uvicorn does: a port whose last server closed its
    connections first (TIME_WAIT) is free again at once; a port with a listener is taken."""
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn's server
        server.bind(("127.0.0.1", 0))
        port = server.getsockname()[1]
        server.listen()
        assert not _port_free("127.0.0.1", port)
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        accepted.close()  # the server's side closes first: its end stays in TIME_WAIT
        client.recv(1)
        client.close()
    assert _port_free("127.0.0.1", port)
