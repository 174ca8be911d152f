"""``teleconsult report verify`` (issue 14, R26, R27): a signed opinion report checked offline.

The export is made by ``consult.consultations.signing`` as the server makes it: certificates
issued by a test SM2 CA (OpenSSL CLI), SM2 signatures over the canonical document, RFC 3161
timestamps from a local authority (``openssl ts``). The command accepts it, and names a changed
byte of the document, a signer certificate of another CA, and a timestamp of another signature.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import io
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from signing_ca import make_sm2_ca
from timestamping import make_authority, serve_authority

from consult.consultations import report_pdf
from consult.consultations.signing import SigningAuthority, canonical, export_document
from consult.trust import SM2Key, TimestampAuthority
from web.cli import main


def _document() -> dict[str, Any]:
    return {
        "type": "opinion_report",
        "consultation_id": "c" * 32,
        "kind": "consultation",
        "report_id": "r" * 32,
        "version": 1,
        "supersedes_id": None,
        "inviter_institution": {"id": "d" * 32, "name": "青山镇卫生院"},
        "invitee_institution": {"id": "u" * 32, "name": "省人民医院"},
        "content": {"opinion": "稳定型心绞痛可能性大", "treatment_plan": "冠脉 CTA"},
    }


async def _signed_export(tmp_path: Path) -> tuple[dict[str, Any], Path, Path, SigningAuthority]:
    ca = make_sm2_ca(tmp_path / "ca")
    authority = SigningAuthority(SM2Key.from_pem(ca.key.read_bytes()), ca.cert.read_bytes())
    tsa = make_authority(tmp_path / "tsa")
    document = _document()
    data = canonical(document)
    signatures = []
    async with serve_authority(tsa) as url:
        for name in ("王教授", "陈医生"):
            key = SM2Key.generate()
            now = datetime.now(UTC)
            certificate = authority.issue(key.public_pem(), common_name=name, serial=name, now=now)
            signature = key.sign(data)
            stamp = await TimestampAuthority(url).stamp(signature)
            signatures.append(
                {
                    "signer_id": name,
                    "signer_name": name,
                    "signed_at": now.isoformat(),
                    "certificate": certificate.decode(),
                    "signature": base64.b64encode(signature).decode(),
                    "timestamp": base64.b64encode(stamp).decode(),
                }
            )
    return export_document(document, signatures), ca.cert, tsa.ca_file, authority


def _verify(
    tmp_path: Path,
    export: dict[str, Any],
    ca: Path,
    tsa_ca: Path,
    *,
    process: bool = False,
    extra: tuple[str, ...] = (),
) -> tuple[int, str]:
    """Run the command: in a new process (as an operator would), or in this one (faster)."""
    path = tmp_path / f"report-{len(list(tmp_path.glob('report-*')))}.json"
    path.write_text(json.dumps(export, ensure_ascii=False), encoding="utf-8")
    argv = ["report", "verify", str(path), "--ca", str(ca), "--tsa-ca", str(tsa_ca),
            "--require-timestamp", *extra]  # fmt: skip
    if process:
        done = subprocess.run(
            [sys.executable, "-m", "web", *argv], capture_output=True, text=True, timeout=120
        )
        return done.returncode, done.stdout + done.stderr
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        status = main(argv)
    return status, out.getvalue()


async def test_r26_report_verify_accepts_the_export_and_names_each_tampering(
    tmp_path: Path,
) -> None:
    export, ca, tsa_ca, _ = await _signed_export(tmp_path)

    def verify(changed: dict[str, Any]) -> tuple[int, str]:
        return _verify(tmp_path, changed, ca, tsa_ca)

    def verify_pdf(pdf_path: Path) -> tuple[int, str]:
        return _verify(tmp_path, export, ca, tsa_ca, extra=("--pdf", str(pdf_path)))

    status, text = await asyncio.to_thread(_verify, tmp_path, export, ca, tsa_ca, process=True)
    assert status == 0 and text.strip().endswith("OK"), text
    assert "王教授, 陈医生" in text

    # One changed character of the document: the digest and both signatures fail.
    altered = copy.deepcopy(export)
    altered["document"]["content"]["opinion"] = "稳定型心绞痛可能性小"
    status, text = await asyncio.to_thread(verify, altered)
    assert status == 1 and "PROBLEM document_altered" in text, text
    assert text.count("PROBLEM signature_invalid") == 2, text

    # A signer certificate issued by another CA (its own signature over the document is fine).
    rogue = make_sm2_ca(tmp_path / "rogue", name="Rogue CA")
    rogue_authority = SigningAuthority(
        SM2Key.from_pem(rogue.key.read_bytes()), rogue.cert.read_bytes()
    )
    key = SM2Key.generate()
    forged = copy.deepcopy(export)
    forged["signatures"][1]["certificate"] = rogue_authority.issue(
        key.public_pem(), common_name="陈医生", serial="x", now=datetime.now(UTC)
    ).decode()
    forged["signatures"][1]["signature"] = base64.b64encode(
        key.sign(canonical(export["document"]))
    ).decode()
    status, text = await asyncio.to_thread(verify, forged)
    assert status == 1 and "PROBLEM certificate_untrusted [陈医生]" in text, text
    assert "[王教授]" not in text

    # A timestamp that covers another signature.
    swapped = copy.deepcopy(export)
    swapped["signatures"][0]["timestamp"] = export["signatures"][1]["timestamp"]
    status, text = await asyncio.to_thread(verify, swapped)
    assert status == 1 and "PROBLEM timestamp_mismatch [王教授]" in text, text

    # The PDF: made again from the verified JSON; one changed byte is named by its offset.
    pdf = await asyncio.to_thread(report_pdf.render, export)
    assert pdf.startswith(b"%PDF-") and b"+NotoSansCJKSC" in pdf
    (tmp_path / "report.pdf").write_bytes(pdf)
    status, text = await asyncio.to_thread(verify_pdf, tmp_path / "report.pdf")
    assert status == 0 and text.strip().endswith("OK"), text
    changed = bytearray(pdf)
    changed[len(pdf) // 2] ^= 0x01
    (tmp_path / "changed.pdf").write_bytes(bytes(changed))
    status, text = await asyncio.to_thread(verify_pdf, tmp_path / "changed.pdf")
    assert status == 1 and f"PROBLEM pdf_altered: first differing byte {len(pdf) // 2}" in text

    # A signature left without its timestamp, when one is required.
    bare = copy.deepcopy(export)
    bare["signatures"][0]["timestamp"] = None
    status, text = await asyncio.to_thread(verify, bare)
    assert status == 1 and "PROBLEM timestamp_missing [王教授]" in text, text
