"""The signed-in account's reminders (issue 14, R11): invitations to answer, sessions about to
start, answers of invitations. Made by the reminder task (``web.reminders``); kept in
:mod:`consult.reminders`."""

from __future__ import annotations

from consult import reminders
from consult.reminders import ReminderList, ReminderView

from ..call import Call
from ..fields import Id, Input, View
from ..registry import api


class Reminders(View[ReminderList]):
    """The caller's newest reminders (at most 50), newest first, and its unread count."""


class Reminder(View[ReminderView]):
    """One reminder."""


class ReminderPath(Input):
    reminder_id: Id


@api.operation("GET", "/me/reminders", action="reminder.list", tag="reminders")
async def my_reminders(call: Call) -> Reminders:
    """The caller's reminders; ids, kinds and moments only (no patient data)."""
    return Reminders(await reminders.list_reminders(call.db, call.me))


@api.operation("POST", "/me/reminders/{reminder_id}/read", action="reminder.read", tag="reminders")
async def mark_read(call: Call, path: ReminderPath) -> Reminder:
    """Mark one of the caller's reminders read (again: no change); another's is
    `reminder_not_found`."""
    return Reminder(await reminders.mark_read(call.db, call.me, path.reminder_id))
