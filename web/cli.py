"""``gps-monitor web [--host H] [--port P]``: serve the REST API, the websocket feed and the map.

``gps-monitor user create NAME --role bureau|operator|enforcement [--company NAME]
[--password P]``: create a web user (operators need their company; without --password a random
one is generated and printed once).
"""

from __future__ import annotations

import argparse
import asyncio
import secrets

from gps_monitor.config import Settings
from gps_monitor.db import migrate, registry, users
from gps_monitor.db.pool import connect
from gps_monitor.errors import ConfigurationError, NotFoundError
from gps_monitor.service import upgrade_schema


def tcp_port(text: str) -> int:
    """``--port`` value: a TCP port 1-65535 (0 would let the system pick one at random).

    Raises:
        argparse.ArgumentTypeError: anything else (argparse exits 2 with the message).
    """
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expected 1-65535, got {text}")
    return port


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=None, help="bind address (default web.host, 127.0.0.1)")
    parser.add_argument(
        "--port", type=tcp_port, default=None, help="port 1-65535 (default web.port, 8000)"
    )
    parser.add_argument(
        "--no-upgrade", action="store_true", help="do not apply pending migrations at start"
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from web.app import check_production, create_app
    from web.security import uvicorn_log_config

    check_production(settings)
    if not args.no_upgrade:
        asyncio.run(upgrade_schema(settings.database))
    host = args.host or settings.web.host
    port = args.port or settings.web.port
    print(f"gps-monitor web: map at http://{host}:{port}/map, API docs at /docs", flush=True)
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_level=settings.log_level.lower(),
        log_config=uvicorn_log_config(),  # no ?token= value in the access log
        ws="websockets-sansio",
        proxy_headers=True,
        forwarded_allow_ips=settings.web.forwarded_allow_ips,
    )
    return 0


# ------------------------------------------------------------------ `gps-monitor user`


def add_user_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    create = sub.add_parser("create", help="create a web user")
    create.add_argument("name")
    create.add_argument("--role", required=True, choices=[str(r) for r in users.Role])
    create.add_argument("--company", default=None, help="company name (operators only)")
    create.add_argument("--password", default=None, help="default: a random one, printed once")
    create.add_argument("--display-name", default=None)


async def create_user(
    settings: Settings,
    name: str,
    role: str,
    company: str | None,
    password: str | None,
    display_name: str | None = None,
) -> tuple[users.User, str]:
    """Create a user (migrating the database first); returns it and its password.

    Raises:
        NotFoundError: the company does not exist.
        UserError: see :func:`gps_monitor.db.users.create_user`.
    """
    password = password or secrets.token_urlsafe(12)
    conn = await connect(settings.database)
    try:
        await migrate.upgrade(conn, settings.database)
        company_id = None
        if company is not None:
            company_id = (await registry.company_ids_by_name(conn, [company])).get(company)
            if company_id is None:
                raise NotFoundError(
                    f"company {company!r}: expected an existing company, found none"
                )
        user = await users.create_user(conn, name, password, role, company_id, display_name)
    finally:
        await conn.close()
    return user, password


def run_user(args: argparse.Namespace, settings: Settings) -> int:
    if args.role == "operator" and not args.company:
        raise ConfigurationError("--company: expected a company name for an operator, got none")
    user, password = asyncio.run(
        create_user(settings, args.name, args.role, args.company, args.password, args.display_name)
    )
    shown = password if args.password is None else "(as given)"
    print(
        f"created user {user.username} (role {user.role}, company_id {user.company_id}); "
        f"password: {shown}"
    )
    return 0
