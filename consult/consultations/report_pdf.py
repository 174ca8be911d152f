"""The opinion report as a PDF in Chinese (issue 14 item 5, R15): made with fpdf2 from the signed
export, embedding a subset of the Noto Sans CJK font, with the signatures listed.

The PDF is a deterministic rendering of the signed JSON (fixed creation date: the last signature's
time; same fpdf2 version and font): ``teleconsult report verify FILE.json --pdf FILE.pdf`` makes
it again from the verified JSON and names the first byte where the given PDF differs.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from consult.crypto import sm3_hex

FONT_CANDIDATES: Final = (
    Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"),
    Path("/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc"),
)
SC_FACE: Final = 2
"""Index of "Noto Sans/Serif CJK SC" in Debian's fonts-noto-cjk collections."""
LABELS: Final = {
    "findings": "检查所见",
    "opinion": "诊断意见",
    "treatment_plan": "治疗方案",
    "medication_advice": "用药建议",
    "referral_advice": "转诊建议",
}
DIAGNOSIS_LABELS: Final = {
    "examination": "检查项目",
    "findings": "检查所见",
    "opinion": "诊断意见（印象）",
    "recommendation": "建议",
}
"""A remote read's diagnostic report (R14, R19)."""
KINDS: Final = {
    "consultation": "远程会诊",
    "imaging": "远程影像诊断",
    "ecg": "远程心电诊断",
    "pathology": "远程病理诊断",
    "ultrasound": "远程超声诊断",
}


class PdfUnavailable(RuntimeError):
    """No Chinese font is installed (Debian package fonts-noto-cjk)."""


def _font() -> Path:
    for path in FONT_CANDIDATES:
        if path.exists():
            return path
    raise PdfUnavailable("fonts-noto-cjk is not installed")


def render(export: Mapping[str, Any]) -> bytes:
    """The PDF of a signed report export (CPU-bound: call it off the event loop)."""
    # imported here: 0.6 s that the first PDF pays, not every start of a process
    from fpdf import FPDF

    document = export["document"]
    signatures = export["signatures"]
    pdf = FPDF(format="A4")
    last = max(datetime.fromisoformat(s["signed_at"]) for s in signatures)
    pdf.set_creation_date(last)
    pdf.set_title(f"会诊意见报告 {document['report_id']}")
    pdf.set_producer("teleconsult")
    # The collection's Simplified Chinese face (Debian's Noto CJK: JP, KR, SC, TC, HK, ...).
    pdf.add_font("cjk", fname=str(_font()), collection_font_number=SC_FACE)
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    width = pdf.epw

    def line(text: str, size: int = 11, height: float = 7) -> None:
        pdf.set_font("cjk", size=size)
        pdf.multi_cell(width, height, text, new_x="LMARGIN", new_y="NEXT")

    diagnosis = document.get("type") == "diagnostic_report"
    kind = KINDS.get(document.get("kind", ""), "远程会诊")
    line(f"{kind}{'报告' if diagnosis else '意见报告'}", size=18, height=11)
    line(f"邀请方：{document['inviter_institution']['name']}")
    line(f"受邀方：{document['invitee_institution']['name']}")
    line(f"会诊编号：{document['consultation_id']}    报告版本：第 {document['version']} 版")
    if document.get("supersedes_id"):
        line(f"取代版本：{document['supersedes_id']}", size=9)
    if diagnosis:
        _liability(line, document)
    pdf.ln(3)
    for key, label in (DIAGNOSIS_LABELS if diagnosis else LABELS).items():
        value = str(document["content"].get(key) or "—")
        line(label, size=13, height=8)
        line(value)
        pdf.ln(1)
    pdf.ln(3)
    line("电子签名（SM2-with-SM3，GB/T 35276 标识 1234567812345678）", size=13, height=8)
    for entry in signatures:
        signature = base64.b64decode(entry["signature"])
        stamped = "有可信时间戳" if entry.get("timestamp") else "无时间戳"
        line(
            f"{entry.get('signer_name') or entry['signer_id']}  签名时间 {entry['signed_at']}  "
            f"{stamped}",
            size=10,
        )
        line(f"签名值 SM3：{sm3_hex(signature)}", size=8, height=5)
    acceptance = export.get("acceptance")
    if acceptance:
        pdf.ln(3)
        line("邀请方确认（共同责任，R14）", size=13, height=8)
        line(
            f"{acceptance['institution']['name']} {acceptance['decided_by']['name']}  "
            f"确认时间 {acceptance.get('decided_at') or '—'}",
            size=10,
        )
        line(f"处理决定：{acceptance['decision']}", size=10)
        line(f"所确认的报告文档 SM3：{acceptance['accepts_document_sm3']}", size=8, height=5)
    pdf.ln(3)
    line(f"报告文档 SM3：{export['document_sm3']}", size=8, height=5)
    line("核验：teleconsult report verify 报告.json --ca 医院CA证书.pem --pdf 本文件.pdf", size=8)
    return bytes(pdf.output())


def _liability(line: Any, document: Mapping[str, Any]) -> None:
    """The exams read and both sides of the joint liability (R14)."""
    liability = document.get("liability") or {}
    performing = liability.get("performing") or {}
    reading = liability.get("reading") or {}
    for exam in document.get("exams") or []:
        modalities = "/".join(exam.get("modalities") or []) or "DICOM"
        line(f"检查：{modalities}，{exam.get('instances', 0)} 个图像/波形", size=10)
    line("共同责任：邀请方完成检查，受邀方阅片并出具报告，双方共同承担责任。", size=10)
    doctor = (performing.get("requesting_doctor") or {}).get("name", "")
    line(
        f"检查方：{(performing.get('institution') or {}).get('name', '')}  申请医师：{doctor}",
        size=10,
    )
    line(
        f"诊断方：{(reading.get('institution') or {}).get('name', '')}  诊断医师：见下列电子签名",
        size=10,
    )


def first_difference(a: bytes, b: bytes) -> int | None:
    """The offset of the first byte where ``a`` and ``b`` differ (``None``: identical)."""
    for index, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return index
    return None if len(a) == len(b) else min(len(a), len(b))
