"""What a referral (R17) and an interpretation request (R18) share: both follow an issued
report, and both name institutions and departments in their views."""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import select

from consult.actor import Actor
from consult.audit import AuditTx
from consult.consultations.errors import NotReported
from consult.consultations.loading import refuse
from consult.consultations.models import (
    Consultation,
    ConsultationState,
    OpinionReport,
    ReportState,
)
from consult.models import Department, Institution

REPORTED: Final = frozenset({ConsultationState.REPORTED.value, ConsultationState.DECIDED.value})
"""A consultation whose report is issued: reported, or decided by the inviter since."""


async def issued_report(tx: AuditTx, actor: Actor, row: Consultation, action: str) -> OpinionReport:
    """The consultation's current issued report version; an audited ``consultation_not_reported``
    when the consultation has none yet (R17, R18)."""
    report = None
    if row.status in REPORTED:
        report = await tx.session.scalar(
            select(OpinionReport)
            .where(
                OpinionReport.consultation_id == row.id,
                OpinionReport.status == ReportState.ISSUED.value,
            )
            .order_by(OpinionReport.version.desc())
            .limit(1)
        )
    if report is None:
        raise refuse(tx, actor, NotReported(), action, row.id, state=row.status)
    return report


async def institution_names(session: Any, ids: set[str]) -> dict[str, str]:
    """Institution names by id."""
    if not ids:
        return {}
    query = select(Institution.id, Institution.name).where(Institution.id.in_(sorted(ids)))
    return {row[0]: row[1] for row in (await session.execute(query)).all()}


async def department_names(session: Any, ids: set[str]) -> dict[str, str]:
    """Department names by id."""
    if not ids:
        return {}
    query = select(Department.id, Department.name).where(Department.id.in_(sorted(ids)))
    return {row[0]: row[1] for row in (await session.execute(query)).all()}
