// Strings of the reminders list (reminders.js) on /consult and /waiting: Simplified Chinese and
// English. Kinds: docs/consultations.md, Reminders.

export const REMINDER_STRINGS = {
  "zh-CN": {
    "rm.button": "提醒",
    "rm.button_unread": "提醒（{count} 条未读）",
    "rm.heading": "提醒",
    "rm.none": "暂无提醒",
    "rm.mark_read": "标为已读",
    "rm.read": "已读",
    "rm.kind.invitation_due_half": "会诊邀请待您答复，答复期限已过半：{at} 前答复",
    "rm.kind.invitation_due_soon": "会诊邀请即将过期：请在 {at} 前答复",
    "rm.kind.session_soon_24h": "会诊将于 {at} 开始（24 小时内）",
    "rm.kind.session_soon_15m": "会诊将于 {at} 开始（15 分钟内）",
    "rm.kind.invitation_accepted": "受邀专家已接受会诊邀请（{at}）",
    "rm.kind.invitation_declined": "受邀专家已拒绝会诊邀请（{at}），请查看原因",
    "rm.kind.invitation_expired": "会诊邀请未在期限内答复，已过期（{at}）",
    "rm.kind.unknown": "提醒（{at}）",
  },
  en: {
    "rm.button": "Reminders",
    "rm.button_unread": "Reminders ({count} unread)",
    "rm.heading": "Reminders",
    "rm.none": "No reminders",
    "rm.mark_read": "Mark read",
    "rm.read": "Read",
    "rm.kind.invitation_due_half": "A consultation invitation awaits your answer; half the time has passed: answer by {at}",
    "rm.kind.invitation_due_soon": "A consultation invitation expires soon: answer by {at}",
    "rm.kind.session_soon_24h": "The consultation starts at {at} (within 24 hours)",
    "rm.kind.session_soon_15m": "The consultation starts at {at} (within 15 minutes)",
    "rm.kind.invitation_accepted": "An invited expert accepted ({at})",
    "rm.kind.invitation_declined": "An invited expert declined ({at}); see the reason",
    "rm.kind.invitation_expired": "An invitation was not answered in time and expired ({at})",
    "rm.kind.unknown": "Reminder ({at})",
  },
};
