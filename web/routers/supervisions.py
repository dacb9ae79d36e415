"""督办 (supervision orders): the bureau puts an alarm, or a company, under supervision with a
deadline and a note; that company's operators see it flagged with its deadline and answer it.

Who: bureau issues (and reads everything); an operator reads and answers only its own company's
orders (another company's answers 404); enforcement reads. Each change is audited in the same
transaction. State (derived, :mod:`gps_monitor.db.supervisions`): open, overdue, answered (by the
deadline), answered_late. The KPI 督办处理率 = answered by the deadline / issued.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from gps_monitor.db import alarms as alarms_db
from gps_monitor.db import audit, registry
from gps_monitor.db import supervisions as supervisions_db
from gps_monitor.db.users import Role
from web.deps import BureauUser, CurrentUser, DbId, HandlerUser, PoolDep, company_scope, not_found

router = APIRouter(prefix="/api/supervisions", tags=["supervisions"])


class SupervisionIn(BaseModel):
    """An order on one alarm (``alarm_id``) or on a company as a whole (``company_id``)."""

    model_config = ConfigDict(extra="forbid")

    alarm_id: DbId | None = None
    company_id: DbId | None = None
    deadline: AwareDatetime = Field(description="Answer due by (ISO 8601 with a UTC offset)")
    note: str = Field(min_length=1, max_length=2000, description="What the bureau asks for")

    @model_validator(mode="after")
    def _one_target(self) -> SupervisionIn:
        if (self.alarm_id is None) == (self.company_id is None):
            raise ValueError("expected exactly one of alarm_id or company_id")
        return self


class AnswerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    answer: str = Field(min_length=1, max_length=2000, description="What the company did")


async def _announce(request: Request, alarm_id: int | None, pool: Any) -> None:
    """Tell live clients that an alarm's supervision changed (its row shows the flag)."""
    hub = getattr(request.app.state, "hub", None)
    if hub is None or alarm_id is None:
        return
    row = await alarms_db.view_row(pool, alarm_id)
    if row is not None:
        await hub.announce_alarm_change(row)


@router.post("", status_code=201)
async def issue(
    body: SupervisionIn, request: Request, user: BureauUser, pool: PoolDep
) -> dict[str, Any]:
    """Put an alarm or a company under 督办 (bureau). 404 for an unknown alarm or company; 422
    for a deadline not in the future."""
    if body.deadline <= datetime.now(UTC):
        raise HTTPException(
            422, f"deadline: expected a time in the future, got {body.deadline.isoformat()}"
        )
    async with pool.acquire() as conn, conn.transaction():
        if body.alarm_id is not None:
            company_id = await alarms_db.company_of(conn, body.alarm_id)
            if company_id is None:
                raise not_found(f"alarm {body.alarm_id}")
        else:
            assert body.company_id is not None  # SupervisionIn: an alarm or a company
            if await registry.company_name(conn, body.company_id) is None:
                raise not_found(f"company {body.company_id}")
            company_id = body.company_id
        row = await supervisions_db.issue(
            conn,
            company_id=company_id,
            alarm_id=body.alarm_id,
            note=body.note,
            deadline=body.deadline,
            issued_by=user.id,
        )
        await audit.record(
            conn,
            user,
            "supervision.issue",
            "supervision",
            row["id"],
            company_id=company_id,
            details={"alarm_id": body.alarm_id, "deadline": body.deadline.isoformat(),
                     "note": body.note},
        )  # fmt: skip
    await _announce(request, body.alarm_id, pool)
    return row


@router.get("")
async def list_supervisions(
    user: CurrentUser,
    pool: PoolDep,
    company_id: DbId | None = None,
    alarm_id: DbId | None = None,
    state: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[dict[str, Any]]:
    """Orders the user may see: unanswered first (nearest deadline first), each with its state;
    filter by company, alarm and state (open, overdue, answered, answered_late)."""
    if state is not None and state not in supervisions_db.STATES:
        raise HTTPException(
            422, f"state: expected one of {', '.join(supervisions_db.STATES)}, got {state!r}"
        )
    return await supervisions_db.listing(
        pool, company_scope(user, company_id), state, alarm_id, limit
    )


@router.get("/{supervision_id}")
async def get_supervision(supervision_id: DbId, user: CurrentUser, pool: PoolDep) -> dict[str, Any]:
    row = await supervisions_db.get(pool, supervision_id, company_scope(user))
    if row is None:
        raise not_found(f"supervision {supervision_id}")
    return row


@router.post("/{supervision_id}/answer")
async def answer(
    supervision_id: DbId, body: AnswerIn, request: Request, user: HandlerUser, pool: PoolDep
) -> dict[str, Any]:
    """The company answers its order (its operators; the bureau may record an answer given
    another way). 409 when already answered; an overdue order can still be answered (it counts
    as answered late)."""
    async with pool.acquire() as conn, conn.transaction():
        row = await supervisions_db.get(conn, supervision_id, company_scope(user), lock=True)
        if row is None:
            raise not_found(f"supervision {supervision_id}")
        if row["answered_at"] is not None:
            raise HTTPException(
                409, f"supervision {supervision_id}: expected unanswered, got answered"
            )
        await supervisions_db.answer(conn, supervision_id, body.answer, user.id)
        await audit.record(
            conn,
            user,
            "supervision.answer",
            "supervision",
            supervision_id,
            company_id=row["company_id"],
            details={"answer": body.answer, "by_bureau": user.role == Role.BUREAU},
        )
        row = await supervisions_db.get(conn, supervision_id, None)
        assert row is not None
    await _announce(request, row["alarm_id"], pool)
    return row
