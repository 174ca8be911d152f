"""Ratings of finished visits (R40), the patient's history of visits, and a doctor's
satisfaction figure (R41). The rules live in :mod:`consult.ratings`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field, StrictInt

from consult import ratings, visit_flow
from consult.models import VisitMode, VisitState
from consult.ratings import RatingState, RatingView
from consult.visit_details import visit_details

from ..call import Call
from ..fields import Id, Input, Output, Storable
from ..registry import api

#: Bounded by the request body limit only: consult refuses text over 500 characters with the
#: stable code ``rating_text_invalid``, whatever its size.
RatingText = Annotated[str, Storable]


class RatingIn(Input):
    stars: StrictInt = Field(description="1 to 5; another number: `rating_stars_invalid`.")
    text: RatingText | None = Field(
        default=None, description="Optional, at most 500 characters; passes the word filter."
    )


class ReplyIn(Input):
    text: RatingText = Field(description="1 to 500 characters; passes the word filter.")


class Rating(Output):
    visit_id: str
    stars: int
    text: str | None
    created_at: datetime
    edited_at: datetime | None = Field(description="Set: the one edit is used (R40).")
    reply: str | None = Field(description="The doctor's reply.")
    replied_at: datetime | None
    can_edit: bool = Field(description="The one edit is unused and within 30 days.")
    can_reply: bool = Field(description="No reply yet and within 30 days.")


class RatingStatus(Output):
    can_rate: bool = Field(description="Finished, not yet rated, within 15 days of its end.")
    rate_until: datetime | None
    rating: Rating | None


class HistoryVisit(Output):
    id: str
    state: VisitState
    mode: VisitMode
    doctor_id: str
    doctor_name: str
    department_name: str | None
    created_at: datetime
    slot_starts_at: datetime | None
    admitted_at: datetime | None
    closed_at: datetime | None
    can_rate: bool
    rate_until: datetime | None
    rating: Rating | None


class VisitHistory(Output):
    visits: list[HistoryVisit]


class HistoryQuery(Input):
    limit: int = Field(default=50, ge=1, le=200)


class VisitPath(Input):
    visit_id: Id


class DoctorPath(Input):
    user_id: Id


class SatisfactionOut(Output):
    doctor_id: str
    count: int = Field(description="Rated visits.")
    average: float | None = Field(description="Average stars, 2 decimals; none without ratings.")


def rating_of(view: RatingView) -> Rating:
    return Rating(
        visit_id=view.visit_id,
        stars=view.stars,
        text=view.text,
        created_at=view.created_at,
        edited_at=view.edited_at,
        reply=view.reply,
        replied_at=view.replied_at,
        can_edit=view.can_edit,
        can_reply=view.can_reply,
    )


def status_of(state: RatingState) -> RatingStatus:
    return RatingStatus(
        can_rate=state.can_rate,
        rate_until=state.rate_until,
        rating=rating_of(state.rating) if state.rating else None,
    )


@api.operation("GET", "/visits/{visit_id}/rating", action="rating.view", tag="ratings")
async def get_rating(call: Call, path: VisitPath) -> RatingStatus:
    """A visit's rating, and whether it may be rated now (the view is audited)."""
    return status_of(await ratings.get_rating(call.db, call.me, path.visit_id))


@api.operation(
    "POST", "/visits/{visit_id}/rating", action="rating.submit", tag="ratings", status=201
)
async def rate_visit(call: Call, path: VisitPath, body: RatingIn) -> Rating:
    """The patient side rates a finished visit, within 15 days of its end (R40)."""
    view = await ratings.rate_visit(
        call.db, call.me, path.visit_id, stars=body.stars, text=body.text
    )
    return rating_of(view)


@api.operation("PUT", "/visits/{visit_id}/rating", action="rating.edit", tag="ratings")
async def edit_rating(call: Call, path: VisitPath, body: RatingIn) -> Rating:
    """The patient side edits its rating, once, within 30 days of it (R40)."""
    view = await ratings.edit_rating(
        call.db, call.me, path.visit_id, stars=body.stars, text=body.text
    )
    return rating_of(view)


@api.operation("POST", "/visits/{visit_id}/rating/reply", action="rating.reply", tag="ratings")
async def reply_to_rating(call: Call, path: VisitPath, body: ReplyIn) -> Rating:
    """The visit's doctor replies to its rating, once, within 30 days of it (R40)."""
    return rating_of(await ratings.reply(call.db, call.me, path.visit_id, text=body.text))


@api.operation("GET", "/me/visits", action="visit.history", tag="ratings")
async def visit_history(call: Call, query: HistoryQuery) -> VisitHistory:
    """The signed-in patient's visits (its own and its wards'), newest first, each with its
    doctor, department, times and rating state."""
    views = await visit_flow.list_visits(call.db, call.me, limit=query.limit)
    states = await ratings.states_of(call.db, [view.id for view in views])
    items = []
    for view in views:
        details = await visit_details(call.db, view.id)
        state = states[view.id]
        items.append(
            HistoryVisit(
                id=view.id,
                state=view.state,
                mode=view.mode,
                doctor_id=view.doctor_id,
                doctor_name=details.doctor_name if details else "",
                department_name=details.department_name if details else None,
                created_at=view.created_at,
                slot_starts_at=details.slot_starts_at if details else None,
                admitted_at=view.admitted_at,
                closed_at=view.closed_at,
                can_rate=state.can_rate,
                rate_until=state.rate_until,
                rating=rating_of(state.rating) if state.rating else None,
            )
        )
    return VisitHistory(visits=items)


@api.operation(
    "GET",
    "/practitioners/{user_id}/satisfaction",
    action="report.satisfaction",
    tag="ratings",
)
async def doctor_satisfaction(call: Call, path: DoctorPath) -> SatisfactionOut:
    """R41: a doctor's rated visits and average stars (the doctor its own; an operator its
    departments' doctors)."""
    figure = await ratings.satisfaction(call.db, call.me, path.user_id)
    return SatisfactionOut(doctor_id=figure.doctor_id, count=figure.count, average=figure.average)


class DoctorRatingOut(Output):
    visit_id: str
    closed_at: datetime | None
    rating: Rating


class DoctorRatings(Output):
    ratings: list[DoctorRatingOut]


class DoctorRatingsQuery(Input):
    limit: int = Field(default=20, ge=1, le=100)


@api.operation("GET", "/me/ratings", action="rating.list", tag="ratings")
async def my_ratings(call: Call, query: DoctorRatingsQuery) -> DoctorRatings:
    """The signed-in doctor's newest ratings, to read and reply to (the read is audited)."""
    found = await ratings.doctor_ratings(call.db, call.me, limit=query.limit)
    return DoctorRatings(
        ratings=[
            DoctorRatingOut(
                visit_id=item.visit_id, closed_at=item.closed_at, rating=rating_of(item.rating)
            )
            for item in found
        ]
    )
