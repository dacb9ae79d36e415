"""Web users, roles and login tokens (tables ``users`` and ``user_tokens``, migration 0050).

Passwords are hashed with argon2id (argon2-cffi's :class:`~argon2.PasswordHasher` defaults).
A login token is 32 random bytes (URL-safe text) given to the client once; the database keeps
only ``HMAC-SHA256(secret_key, token)``, so a leaked table does not let anyone log in.

Roles (DOMAIN.md, Who uses the system):
    bureau       county transport bureau: sees and manages everything
    operator     one transport company: sees and handles only its own vehicles and alarms
    enforcement  reads everything, records penalty decisions
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import anyio
import anyio.to_thread
import asyncpg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from gps_monitor.errors import GpsMonitorError, NotFoundError

_HASHER = PasswordHasher()


class Role(enum.StrEnum):
    """What a user may see and do."""

    BUREAU = "bureau"
    OPERATOR = "operator"
    ENFORCEMENT = "enforcement"


class UserError(GpsMonitorError):
    """A user cannot be created or changed as asked (duplicate name, operator without
    company...). ``field`` and ``kind`` (``taken``, ``unknown_company``) are set when the refusal
    is tied to one input field, so a form can show it there."""

    def __init__(self, message: str, field: str | None = None, kind: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.kind = kind


@dataclass(frozen=True, slots=True)
class User:
    """A logged-in (or stored) user. ``company_id`` is set for operators only."""

    id: int
    username: str
    role: Role
    company_id: int | None
    display_name: str | None = None

    @property
    def sees_all(self) -> bool:
        """True for bureau and enforcement (every company); False for an operator."""
        return self.role is not Role.OPERATOR

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "username": self.username,
            "role": str(self.role),
            "company_id": self.company_id,
            "display_name": self.display_name,
        }


_USER_COLUMNS = "id, username, role, company_id, display_name"


def _user(row: asyncpg.Record) -> User:
    return User(
        id=row["id"],
        username=row["username"],
        role=Role(row["role"]),
        company_id=row["company_id"],
        display_name=row["display_name"],
    )


def _check_role_company(role: Role, company_id: int | None) -> None:
    """Raises UserError unless an operator has a company and no other role has one."""
    if (role is Role.OPERATOR) != (company_id is not None):
        raise UserError(
            f"role {role}: expected a company for an operator and none for other roles, "
            f"got company_id={company_id}",
            "company_id",
            "company_for_role",
        )


def _unknown_company(company_id: int | None) -> UserError:
    return UserError(
        f"company_id {company_id}: expected an existing company", "company_id", "unknown_company"
    )


def hash_password(password: str) -> str:
    """An argon2id hash string of ``password``."""
    return _HASHER.hash(password)


async def create_user(
    conn: asyncpg.Connection | asyncpg.Pool,
    username: str,
    password: str,
    role: Role | str,
    company_id: int | None = None,
    display_name: str | None = None,
) -> User:
    """Store a new user with an argon2 hash of ``password``.

    Raises:
        UserError: empty name, password shorter than 8 characters, an operator without a company
            or another role with one, or the username is taken.
    """
    role = Role(role)
    if not username.strip():
        raise UserError("username: expected a non-empty name")
    if len(password) < 8:
        raise UserError(f"password: expected at least 8 characters, got {len(password)}")
    _check_role_company(role, company_id)
    try:
        row = await conn.fetchrow(
            "INSERT INTO users (username, password_hash, role, company_id, display_name) "
            "VALUES ($1, $2, $3, $4, $5) "
            "RETURNING id, username, role, company_id, display_name",
            username,
            hash_password(password),
            str(role),
            company_id,
            display_name,
        )
    except asyncpg.UniqueViolationError as error:
        raise UserError(f"username {username!r}: already exists", "username", "taken") from error
    except asyncpg.ForeignKeyViolationError as error:
        raise _unknown_company(company_id) from error
    assert row is not None
    return _user(row)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


_dummy_hash: str | None = None


def _dummy_password_hash() -> str:
    """An argon2 hash of a random secret, made once: what an unknown name is verified against."""
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = _HASHER.hash(secrets.token_urlsafe(32))
    return _dummy_hash


async def authenticate(
    conn: asyncpg.Connection | asyncpg.Pool,
    username: str,
    password: str,
    *,
    limiter: anyio.CapacityLimiter | None = None,
) -> User | None:
    """The active user if ``password`` matches its argon2 hash, else None (no detail why).

    The argon2 work (tens of ms of CPU and 64 MiB each) runs in a worker thread taken from
    ``limiter`` (anyio's default pool of 40 without one), never on the event loop. An unknown or
    inactive name is verified against a dummy hash: the same answer after the same work.
    """
    row = await conn.fetchrow(
        "SELECT id, username, role, company_id, display_name, password_hash FROM users "
        "WHERE username = $1 AND active",
        username,
    )
    stored: str = (
        row["password_hash"]
        if row is not None
        else await anyio.to_thread.run_sync(_dummy_password_hash, limiter=limiter)
    )
    matches = await anyio.to_thread.run_sync(_verify, stored, password, limiter=limiter)
    if row is None or not matches:
        return None
    if _HASHER.check_needs_rehash(stored):
        new_hash = await anyio.to_thread.run_sync(hash_password, password, limiter=limiter)
        await conn.execute("UPDATE users SET password_hash = $2 WHERE id = $1", row["id"], new_hash)
    return _user(row)


def token_digest(token: str, secret_key: str) -> str:
    """Hex HMAC-SHA256 of a token under the web secret key (what the database stores)."""
    return hmac.new(secret_key.encode(), token.encode(), hashlib.sha256).hexdigest()


async def issue_token(
    conn: asyncpg.Connection | asyncpg.Pool, user: User, secret_key: str, lifetime_s: int
) -> tuple[str, datetime]:
    """A new login token for ``user`` and its expiry (UTC). The token is returned only here."""
    token = secrets.token_urlsafe(32)
    expires_at = datetime.now(UTC) + timedelta(seconds=lifetime_s)
    await conn.execute(
        "INSERT INTO user_tokens (token_hash, user_id, expires_at) VALUES ($1, $2, $3)",
        token_digest(token, secret_key),
        user.id,
        expires_at,
    )
    return token, expires_at


async def user_for_token(
    conn: asyncpg.Connection | asyncpg.Pool, token: str, secret_key: str
) -> User | None:
    """The active user a valid, unexpired token belongs to, else None."""
    row = await conn.fetchrow(
        "SELECT u.id, u.username, u.role, u.company_id, u.display_name "
        "FROM user_tokens t JOIN users u ON u.id = t.user_id "
        "WHERE t.token_hash = $1 AND t.expires_at > now() AND u.active",
        token_digest(token, secret_key),
    )
    return None if row is None else _user(row)


async def revoke_token(
    conn: asyncpg.Connection | asyncpg.Pool, token: str, secret_key: str
) -> None:
    """Forget a token (logout); expired tokens are purged at the same time."""
    await conn.execute(
        "DELETE FROM user_tokens WHERE token_hash = $1 OR expires_at < now()",
        token_digest(token, secret_key),
    )


async def set_password(
    conn: asyncpg.Connection | asyncpg.Pool, username: str, password: str
) -> None:
    """Replace a user's password (argon2 hash) and revoke its tokens.

    Raises:
        UserError: password shorter than 8 characters.
        NotFoundError: no such user.
    """
    if len(password) < 8:
        raise UserError(f"password: expected at least 8 characters, got {len(password)}")
    user_id = await conn.fetchval(
        "UPDATE users SET password_hash = $2 WHERE username = $1 RETURNING id",
        username,
        hash_password(password),
    )
    if user_id is None:
        raise NotFoundError(f"user {username!r}: expected an existing user, found none")
    await conn.execute("DELETE FROM user_tokens WHERE user_id = $1", user_id)


async def user_by_name(conn: asyncpg.Connection | asyncpg.Pool, username: str) -> User:
    """The user of that name.

    Raises:
        NotFoundError: no such user.
    """
    row = await conn.fetchrow(
        "SELECT id, username, role, company_id, display_name FROM users WHERE username = $1",
        username,
    )
    if row is None:
        raise NotFoundError(f"user {username!r}: expected an existing user, found none")
    return _user(row)


# ------------------------------------------------------------------ the bureau's user screen


async def list_users(conn: asyncpg.Connection | asyncpg.Pool) -> list[dict[str, object]]:
    """Every user by name: :meth:`User.to_dict` plus ``active``, ``company_name`` and
    ``created_at`` (UTC). Never a password hash."""
    rows = await conn.fetch(
        f"SELECT {_USER_COLUMNS.replace('id,', 'u.id,', 1)}, u.active, u.created_at, "
        "c.name AS company_name FROM users u LEFT JOIN companies c ON c.id = u.company_id "
        "ORDER BY u.username"
    )
    return [
        {
            **_user(r).to_dict(),
            "active": r["active"],
            "company_name": r["company_name"],
            "created_at": r["created_at"],
        }
        for r in rows
    ]


async def user_by_id(conn: asyncpg.Connection | asyncpg.Pool, user_id: int) -> User:
    """The user of that id.

    Raises:
        NotFoundError: no such user.
    """
    row = await conn.fetchrow(f"SELECT {_USER_COLUMNS} FROM users WHERE id = $1", user_id)
    if row is None:
        raise NotFoundError(f"user {user_id}: not found")
    return _user(row)


async def update_user(
    conn: asyncpg.Connection,
    user_id: int,
    *,
    role: Role | str,
    company_id: int | None,
    display_name: str | None,
    active: bool,
) -> User:
    """Set a user's role, company, display name and whether it may log in; disabling it
    (``active`` false) also revokes its tokens.

    Raises:
        UserError: an operator without a company or another role with one; an unknown company.
        NotFoundError: no such user.
    """
    role = Role(role)
    _check_role_company(role, company_id)
    try:
        row = await conn.fetchrow(
            "UPDATE users SET role = $2, company_id = $3, display_name = $4, active = $5 "
            f"WHERE id = $1 RETURNING {_USER_COLUMNS}",
            user_id,
            str(role),
            company_id,
            display_name,
            active,
        )
    except asyncpg.ForeignKeyViolationError as error:
        raise _unknown_company(company_id) from error
    if row is None:
        raise NotFoundError(f"user {user_id}: not found")
    if not active:
        await conn.execute("DELETE FROM user_tokens WHERE user_id = $1", user_id)
    return _user(row)
