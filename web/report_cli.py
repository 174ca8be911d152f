"""``teleconsult report verify FILE --ca CA.pem``: check a signed opinion report offline.

FILE is the JSON the server exports (``GET /api/v1/reports/{id}/signed``). Every signature is
checked over the report's document, every signer certificate against the hospital CA, every
RFC 3161 timestamp against the signature it covers (``--tsa-ca``). The problems are named with
stable codes (``document_altered``, ``signature_invalid``, ``certificate_untrusted``,
``certificate_expired``, ``timestamp_mismatch``, ``timestamp_missing``, ``format_unknown``,
``acceptance_mismatch`` (a remote read's recorded acceptance names another document, R14),
``pdf_altered`` with the offset of the first changed byte of ``--pdf``);
exit status 0 when all holds, 1 when something does not, 2 for unusable input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from consult.consultations import report_pdf
from consult.consultations.signing import Problem, verify_export
from consult.trust import load_certificates


def add_parsers(sub: Any) -> None:
    report = sub.add_parser("report", help="signed consultation opinion reports")
    verbs = report.add_subparsers(dest="action", required=True)
    p = verbs.add_parser("verify", help="check a signed report (JSON export) offline")
    p.add_argument("file", help="the signed report JSON")
    p.add_argument("--ca", required=True, help="the hospital signing CA certificate (PEM)")
    p.add_argument("--tsa-ca", help="the time-stamping authority's CA certificates (PEM)")
    p.add_argument(
        "--require-timestamp", action="store_true", help="a signature without timestamp fails"
    )
    p.add_argument("--pdf", help="the report's PDF: made again from the JSON and compared")


def run(args: argparse.Namespace) -> int:
    try:
        export = json.loads(Path(args.file).read_text(encoding="utf-8"))
        ca = Path(args.ca).read_bytes()
        roots = load_certificates(Path(args.tsa_ca).read_bytes()) if args.tsa_ca else []
    except (OSError, ValueError) as exc:
        print(f"cannot read the input: {exc}", file=sys.stderr)
        return 2
    if not isinstance(export, dict):
        print("not a signed report", file=sys.stderr)
        return 2
    result = verify_export(export, ca, roots, require_timestamp=args.require_timestamp)
    if args.pdf and "document" in export and export.get("signatures"):
        given = Path(args.pdf).read_bytes()
        offset = report_pdf.first_difference(report_pdf.render(export), given)
        if offset is not None:
            result.problems.append(Problem("pdf_altered", detail=f"first differing byte {offset}"))
    print(result.text())
    return 0 if result.ok else 1
