"""Penalty decisions on alarms (处罚决定), recorded and corrected by enforcement officers.

``POST /api/alarms/{alarm_id}/penalty`` records one, ``PUT /api/penalties/{penalty_id}``
corrects one; each is written with its audit entry (``alarm.penalty`` /
``alarm.penalty_edit``, the values before and after) in one transaction. The alarm's decisions
are listed in ``GET /api/alarms/{alarm_id}`` (``penalties``) and shown in its evidence report.
Only the enforcement role may write (403 for bureau and operators); the alarm is looked up under
the user's company scope (404 for what the user may not see).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field, model_validator

from gps_monitor.config import Settings
from gps_monitor.db import audit, penalties
from gps_monitor.db.penalties import DECISIONS, FINE, PenaltyFields
from gps_monitor.payload import shown
from web.deps import DbId, EnforcementUser, PoolDep, SettingsDep, not_found
from web.routers.alarms import fetch_scoped

router = APIRouter(tags=["alarms"])


class PenaltyIn(BaseModel):
    """A penalty decision as the enforcement officer enters it (:mod:`gps_monitor.db.penalties`).

    ``decision``: the kind, one of 罚款 / 警告 / 不予处罚
    (:data:`~gps_monitor.db.penalties.DECISIONS`, surrounding blanks ignored; 422 otherwise,
    listing them); ``decision_number``: 处罚决定书编号;
    ``fine_yuan``: 罚款金额 in yuan, at most 2 decimals, above 0, required when the decision is
    罚款 and refused (422) with 警告 or 不予处罚, which carry no amount;
    ``decided_on``: the date of the decision (local calendar date, from the alarm's day up to
    today; default today); ``note``.
    """

    model_config = ConfigDict(extra="forbid")

    decision: str = Field(
        min_length=1,
        max_length=200,
        examples=list(DECISIONS),
        json_schema_extra={"enum": list(DECISIONS)},
    )
    decision_number: str | None = Field(
        default=None, max_length=100, examples=["渝交执罚〔2026〕第0123号"]
    )
    fine_yuan: Decimal | None = Field(
        default=None, ge=0, lt=Decimal("1e10"), decimal_places=2
    )  # numeric(12, 2)
    decided_on: date | None = None
    note: str | None = Field(default=None, max_length=2000)

    @model_validator(mode="after")
    def _fine_for_a_fine(self) -> PenaltyIn:
        self.decision = self.decision.strip()
        expected = f"decision: expected one of {', '.join(DECISIONS)}"
        if not self.decision:
            raise ValueError(f"{expected}, got blanks")
        if self.decision not in DECISIONS:
            raise ValueError(f"{expected}, got {shown(self.decision)}")
        self.decision_number = (self.decision_number or "").strip() or None
        if self.decision == FINE and self.fine_yuan is None:
            raise ValueError("decision 罚款: expected fine_yuan (罚款金额, yuan), got none")
        if self.decision == FINE and self.fine_yuan == 0:
            raise ValueError(f"decision 罚款: expected fine_yuan above 0, got {self.fine_yuan}")
        if self.decision != FINE and self.fine_yuan is not None:
            raise ValueError(
                f"decision {self.decision}: expected no fine_yuan (only 罚款 carries an amount), "
                f"got {self.fine_yuan}"
            )
        return self

    def fields(self, alarm: dict[str, Any], settings: Settings) -> PenaltyFields:
        """The stored fields of a decision on ``alarm``; ``decided_on`` defaults to today
        (local, ``rules.timezone``).

        Raises:
            HTTPException 422: a decision date before the local day the alarm started (a
                penalty cannot come before the violation) or after today.
        """
        zone = ZoneInfo(settings.rules.timezone)
        today = datetime.now(zone).date()
        started_on = alarm["started_at"].astimezone(zone).date()
        decided_on = self.decided_on or today
        if not started_on <= decided_on <= today:
            raise HTTPException(
                422,
                f"decided_on: expected a date from the alarm's day ({started_on}) up to today "
                f"({today}), got {decided_on}",
            )
        return PenaltyFields(
            decision=self.decision,
            decision_number=self.decision_number,
            fine_yuan=self.fine_yuan,
            decided_on=decided_on,
            note=(self.note or "").strip() or None,
        )


@router.post("/api/alarms/{alarm_id}/penalty", status_code=201)
async def record_penalty(
    alarm_id: DbId, body: PenaltyIn, user: EnforcementUser, pool: PoolDep, settings: SettingsDep
) -> dict[str, Any]:
    """Record a penalty decision on an alarm (enforcement only); audited as ``alarm.penalty``.
    422 for a decision other than 罚款 / 警告 / 不予处罚 (the answer lists them), a 罚款 without
    its amount or a decision date in the future or before the alarm's day; 409 (nothing written)
    when the alarm already has a decision of that number, or without a number the very same
    decision (a double submit: :func:`gps_monitor.db.penalties.find_same`)."""
    async with pool.acquire() as conn, conn.transaction():
        alarm = await fetch_scoped(conn, user, alarm_id, lock=True)
        fields = body.fields(alarm, settings)
        same = await penalties.find_same(conn, alarm_id, fields)
        if same is not None:
            what = (
                f"decision number {fields.decision_number!r}"
                if fields.decision_number
                else "the same decision"
            )
            raise HTTPException(
                409,
                f"penalty: expected a new decision on alarm {alarm_id}, got {what} already "
                f"recorded as penalty {same.id} (correct it with PUT /api/penalties/{same.id})",
            )
        penalty = await penalties.record(conn, alarm_id, fields, user.id)
        await audit.record(
            conn, user, "alarm.penalty", "alarm", alarm_id, company_id=alarm["company_id"],
            details={"penalty_id": penalty.id, **fields.to_dict()},
        )  # fmt: skip
    return penalty.to_dict()


@router.put("/api/penalties/{penalty_id}")
async def edit_penalty(
    penalty_id: DbId,
    body: PenaltyIn,
    user: EnforcementUser,
    pool: PoolDep,
    settings: SettingsDep,
) -> dict[str, Any]:
    """Correct a recorded penalty decision (enforcement only); audited as
    ``alarm.penalty_edit`` with the values before and after. 404 for an unknown decision; 422
    as for recording (a decision recorded before the kinds were checked is corrected to one of
    them)."""
    async with pool.acquire() as conn, conn.transaction():
        before = await penalties.get(conn, penalty_id)
        if before is None:
            raise not_found(f"penalty {penalty_id}")
        alarm = await fetch_scoped(conn, user, before.alarm_id, lock=True)
        fields = body.fields(alarm, settings)
        after = await penalties.update(conn, before, fields, user.id)
        await audit.record(
            conn, user, "alarm.penalty_edit", "alarm", before.alarm_id,
            company_id=alarm["company_id"],
            details={"penalty_id": penalty_id, "before": before.fields.to_dict(),
                     "after": after.fields.to_dict()},
        )  # fmt: skip
    return after.to_dict()
