"""JT/T 809 duty: the superior platform's 查岗 (0x9301) and the links' status.

- ``GET /api/jt809/queries``: the 查岗 questions the user must answer, unanswered first with
  ``seconds_left`` to the deadline (the duty page counts down). The bureau sees all; a company's
  operators see the ones naming their company (object type 2).
- ``POST /api/jt809/queries/{id}/answer`` ``{"answer": "..."}``: records the answer and queues
  its 0x1301 (``jt809_outbox``, with the info id) in the same transaction as the audit entry;
  ``gps-monitor jt809`` sends it on the next pass (within ~0.5 s while a link is up). 409 when
  already answered; an overdue question can still be answered (it counts as late in
  平台查岗响应率). A platform-level question (object type 1 or 3) is the bureau's to answer.
- ``GET /api/jt809/status``: main and slave link status (``up``, ``down: why``, ``refused:
  ... result N (meaning)``), the service's counters (bad frames, unsupported requests...) and
  the 查岗 figures of today (received, answered in time, unanswered). Bureau only.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field

from gps_monitor.db import audit
from gps_monitor.db import jt809 as jt809_db
from gps_monitor.db.users import Role
from web.deps import BureauUser, CurrentUser, DbId, HandlerUser, PoolDep, SettingsDep, not_found

router = APIRouter(prefix="/api/jt809", tags=["jt809"])


class QueryAnswerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    answer: str = Field(
        min_length=1, max_length=1000, description="The duty officer's answer (GBK text)"
    )


def _scope(user: Any) -> int | None:
    """None: every question (bureau, enforcement); else the operator's company."""
    return None if user.sees_all else user.company_id


@router.get("/queries")
async def list_queries(
    user: CurrentUser, pool: PoolDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[dict[str, Any]]:
    if not user.sees_all and user.company_id is None:
        return []
    return await jt809_db.list_queries(pool, _scope(user), limit)


@router.post("/queries/{query_id}/answer")
async def answer_query(
    query_id: DbId, body: QueryAnswerIn, user: HandlerUser, pool: PoolDep
) -> dict[str, Any]:
    try:
        body.answer.encode("gbk")
    except UnicodeEncodeError as error:
        char = body.answer[error.start]
        raise HTTPException(
            422, f"answer: expected characters GBK can encode (JT/T 809 text), got {char!r}"
        ) from None
    async with pool.acquire() as conn, conn.transaction():
        query = await jt809_db.get_query(conn, query_id, _scope(user), lock=True)
        if query is None:
            raise not_found(f"查岗 {query_id}")
        if query["answered_at"] is not None:
            raise HTTPException(409, f"查岗 {query_id}: expected unanswered, got answered")
        await jt809_db.answer_query(conn, query, body.answer, user.id)
        await audit.record(
            conn,
            user,
            "jt809.query.answer",
            "jt809_query",
            query_id,
            company_id=query["company_id"],
            details={"info_id": query["info_id"], "answer": body.answer,
                     "by_bureau": user.role == Role.BUREAU},
        )  # fmt: skip
        row = await jt809_db.get_query(conn, query_id, None)
    assert row is not None
    return row


@router.get("/status")
async def link_status(user: BureauUser, pool: PoolDep, settings: SettingsDep) -> dict[str, Any]:
    tz = ZoneInfo(settings.reports.display_timezone)
    today = datetime.now(tz).replace(hour=0, minute=0, second=0, microsecond=0)
    rows = await jt809_db.query_counts_by_day(
        pool, today.astimezone(UTC), (today + timedelta(days=1)).astimezone(UTC), str(tz)
    )
    figures = {"received": 0, "in_time": 0, "unanswered": 0}
    for row in rows:
        for key in figures:
            figures[key] += int(row[key])
    return {
        "configured": bool(settings.jt809.superior_host),
        "links": await jt809_db.link_status(pool),
        "queries_today": figures,
    }
