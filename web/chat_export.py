"""A room's dialogue as a readable, self-contained HTML page (the chat export, R22, R23).

Everything the page shows is escaped; thumbnails are embedded as ``data:`` URIs, so the file
opens anywhere without the server. It is served with a Content-Security-Policy that lets it load
nothing else.
"""

from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone
from html import escape

from consult.chat import ChatExport, MessageView

ROLE_NAMES = {"doctor": "医生 Doctor", "patient": "患者 Patient"}

#: China keeps one time zone and no daylight saving: the record reads in Beijing time, as the
#: pages do for their readers (the JSON export keeps UTC for machines).
BEIJING = timezone(timedelta(hours=8), "UTC+8")


def _when(moment: datetime) -> str:
    return moment.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S")


_STYLE = """
body { font: 16px/1.5 system-ui, sans-serif; margin: 2rem auto; max-width: 50rem; color: #222; }
table { border-collapse: collapse; width: 100%; }
th, td { border-bottom: 1px solid #ddd; padding: .4rem .5rem; text-align: left;
         vertical-align: top; }
td.text { white-space: pre-wrap; word-break: break-word; }
.retracted { color: #888; text-decoration: line-through; }
img { max-width: 320px; max-height: 320px; }
"""


def _line(
    message: MessageView, retracted: set[str], thumbs: dict[str, str], names: dict[str, str]
) -> str:
    role = ROLE_NAMES.get(message.sender_role, message.sender_role)
    name = names.get(message.sender_id)
    role = escape(f"{name}（{role}）" if name else role)
    at = escape(_when(message.at))
    if message.kind.value == "retraction":
        body = f"撤回了一条消息 / retracted message {escape(message.retracts_id or '')}"
    else:
        body = escape(message.text or "")
        if message.image_id is not None:
            src = thumbs.get(message.image_id)
            image = (
                f'<img alt="image {escape(message.image_id)}" src="{src}">'
                if src
                else f"[image {escape(message.image_id)}]"
            )
            body = f"{image}<br>{body}" if body else image
    css = ' class="text retracted"' if message.id in retracted else ' class="text"'
    return f"<tr><td>{message.seq}</td><td>{at}</td><td>{role}</td><td{css}>{body}</td></tr>"


def render_html(export: ChatExport) -> str:
    """The export as one HTML document."""
    retracted = {m.retracts_id for m in export.messages if m.retracts_id is not None}
    thumbs = {
        image_id: f"data:{content_type};base64,{base64.b64encode(data).decode()}"
        for image_id, (content_type, data) in export.thumbnails.items()
    }
    rows = "\n".join(_line(m, retracted, thumbs, export.names) for m in export.messages)
    exported = escape(_when(export.exported_at))
    return f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<title>问诊对话记录 Chat record {escape(export.room_id)}</title>
<style>{_STYLE}</style></head>
<body>
<h1>问诊对话记录 / Chat record</h1>
<p>诊室 Room: {escape(export.room_id)}<br>导出时间 Exported: {exported}（北京时间 UTC+8）<br>
消息数 Messages: {len(export.messages)}</p>
<table>
<thead><tr><th>#</th><th>时间 Time (UTC+8)</th><th>发送者 Sender</th>
<th>内容 Content</th></tr></thead>
<tbody>
{rows}
</tbody></table>
</body></html>
"""
