"""Signed opinion reports (R13, R26, R27): practitioners' SM2 certificates and the signed file.

The hospital's SM2 CA (configuration: its certificate and key) issues each practitioner a
certificate for an SM2 key the server makes at the first signature and keeps SM4-encrypted
(``signing_credentials``); the key is used only after the practitioner's signing PIN (R35).
Certificates are X.509 v3 built with asn1crypto and signed SM2-with-SM3 through
:mod:`consult.trust` (ID ``1234567812345678``), so OpenSSL's command line verifies them.

What is signed is the report's *document*: canonical JSON (sorted keys, no spaces, UTF-8) of the
report version and its context. Each co-signer's signature is over those bytes; when a
time-stamping authority is configured, its RFC 3161 token covers the signature bytes. The
export (:func:`export_document`) is self-contained: ``teleconsult report verify FILE --ca CA``
checks it offline (:func:`verify_export`).
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from asn1crypto import keys as asn1_keys
from asn1crypto import pem as asn1_pem
from asn1crypto import x509 as asn1_x509
from cryptography import x509

from consult.crypto import sm3_hex
from consult.trust import (
    SM2Key,
    SM2PublicKey,
    TimestampAuthority,
    TrustError,
    verify_timestamp,
)

SM2_WITH_SM3: Final = "1.2.156.10197.1.501"
EXPORT_FORMAT: Final = "teleconsult-opinion-report/1"
CERTIFICATE_DAYS: Final = 730


def canonical(document: Mapping[str, Any]) -> bytes:
    """The bytes signed: sorted keys, no whitespace, UTF-8."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _pem_body(pem: bytes) -> bytes:
    _, _, der = asn1_pem.unarmor(pem)
    return der


def _public_from_spki(spki: asn1_keys.PublicKeyInfo) -> SM2PublicKey:
    return SM2PublicKey.from_pem(asn1_pem.armor("PUBLIC KEY", spki.dump()))


@dataclass(frozen=True)
class SigningAuthority:
    """The hospital CA that issues practitioners' certificates, and the optional TSA."""

    ca_key: SM2Key
    ca_certificate_pem: bytes
    tsa: TimestampAuthority | None = None
    tsa_roots: Sequence[x509.Certificate] = field(default_factory=tuple)

    @property
    def ca_certificate(self) -> asn1_x509.Certificate:
        return asn1_x509.Certificate.load(_pem_body(self.ca_certificate_pem))

    def issue(self, public_pem: bytes, *, common_name: str, serial: str, now: datetime) -> bytes:
        """A certificate (PEM) for the practitioner's public key, signed by the CA."""
        ca = self.ca_certificate
        # serialNumber is a PrintableString: a licence number keeps its printable characters.
        serial = (
            "".join(c for c in serial if c.isascii() and (c.isalnum() or c in " -./:()")) or "0"
        )
        spki = asn1_keys.PublicKeyInfo.load(_pem_body(public_pem))
        start = now.astimezone(UTC).replace(microsecond=0) - timedelta(minutes=5)
        tbs = asn1_x509.TbsCertificate(
            {
                "version": "v3",
                "serial_number": secrets.randbits(63) | 1,
                "signature": {"algorithm": SM2_WITH_SM3},
                "issuer": ca.subject,
                "validity": {
                    "not_before": asn1_x509.Time({"utc_time": start}),
                    "not_after": asn1_x509.Time(
                        {"utc_time": start + timedelta(days=CERTIFICATE_DAYS)}
                    ),
                },
                "subject": asn1_x509.Name.build(
                    {"common_name": common_name, "serial_number": serial}
                ),
                "subject_public_key_info": spki,
                "extensions": [
                    {
                        "extn_id": "basic_constraints",
                        "critical": True,
                        "extn_value": {"ca": False},
                    },
                    {
                        "extn_id": "key_usage",
                        "critical": True,
                        "extn_value": {"digital_signature", "non_repudiation"},
                    },
                ],
            }
        )
        signature = self.ca_key.sign(tbs.dump())
        certificate = asn1_x509.Certificate(
            {
                "tbs_certificate": tbs,
                "signature_algorithm": {"algorithm": SM2_WITH_SM3},
                "signature_value": signature,
            }
        )
        return asn1_pem.armor("CERTIFICATE", certificate.dump())


def certificate_problem(
    certificate_pem: bytes, ca_certificate_pem: bytes, at: datetime
) -> str | None:
    """Why the certificate is not the CA's, valid at ``at``; ``None`` when it is."""
    try:
        certificate = asn1_x509.Certificate.load(_pem_body(certificate_pem))
        ca = asn1_x509.Certificate.load(_pem_body(ca_certificate_pem))
        tbs = certificate["tbs_certificate"]
        if certificate["signature_algorithm"]["algorithm"].dotted != SM2_WITH_SM3:
            return "certificate_algorithm"
        if tbs["issuer"].dump() != ca.subject.dump():
            return "certificate_untrusted"
        ca_key = _public_from_spki(ca["tbs_certificate"]["subject_public_key_info"])
        if not ca_key.verify(tbs.dump(), certificate["signature_value"].native):
            return "certificate_untrusted"
        validity = tbs["validity"]
        if not validity["not_before"].native <= at <= validity["not_after"].native:
            return "certificate_expired"
    except (ValueError, TypeError, KeyError, TrustError):
        return "certificate_malformed"
    return None


def certificate_public_key(certificate_pem: bytes) -> SM2PublicKey:
    certificate = asn1_x509.Certificate.load(_pem_body(certificate_pem))
    return _public_from_spki(certificate["tbs_certificate"]["subject_public_key_info"])


def certificate_subject(certificate_pem: bytes) -> str:
    certificate = asn1_x509.Certificate.load(_pem_body(certificate_pem))
    return str(certificate.subject.native.get("common_name", ""))


# --- The export and its offline check ---------------------------------------------------------


def export_document(
    document: Mapping[str, Any],
    signatures: Sequence[Mapping[str, Any]],
    *,
    acceptance: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The machine-readable signed report: the document, its SM3, each signature with its
    certificate and timestamp (base64); with ``acceptance``, the inviter's recorded decision on
    it (a remote read's joint liability, R14: bound to the document by its SM3, not signed)."""
    export: dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "document": dict(document),
        "document_sm3": sm3_hex(canonical(document)),
        "signatures": [dict(s) for s in signatures],
    }
    if acceptance is not None:
        export["acceptance"] = dict(acceptance)
    return export


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a signed report: a stable code, whose signature, and detail."""

    code: str
    signer: str | None = None
    detail: str = ""


@dataclass
class VerifyResult:
    signers: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and bool(self.signers)

    def text(self) -> str:
        lines = [f"signed by: {', '.join(self.signers) or '-'}"]
        lines += [
            f"PROBLEM {p.code}"
            + (f" [{p.signer}]" if p.signer else "")
            + (f": {p.detail}" if p.detail else "")
            for p in self.problems
        ]
        lines.append("OK" if self.ok else "FAILED")
        return "\n".join(lines)


def verify_export(
    export: Mapping[str, Any],
    ca_certificate_pem: bytes,
    tsa_roots: Sequence[x509.Certificate] = (),
    *,
    require_timestamp: bool = False,
) -> VerifyResult:
    """Check a signed report export offline: each signature over the document, each certificate
    against the CA, each timestamp against the signature it covers."""
    result = VerifyResult()
    if export.get("format") != EXPORT_FORMAT or not isinstance(export.get("document"), dict):
        result.problems.append(Problem("format_unknown"))
        return result
    data = canonical(export["document"])
    if export.get("document_sm3") != sm3_hex(data):
        result.problems.append(Problem("document_altered", detail="document_sm3 differs"))
    acceptance = export.get("acceptance")
    if acceptance is not None and (
        not isinstance(acceptance, dict) or acceptance.get("accepts_document_sm3") != sm3_hex(data)
    ):
        result.problems.append(
            Problem("acceptance_mismatch", detail="the acceptance names another document")
        )
    signatures = export.get("signatures")
    if not isinstance(signatures, list) or not signatures:
        result.problems.append(Problem("unsigned"))
        return result
    for entry in signatures:
        if not isinstance(entry, dict):
            result.problems.append(Problem("signature_malformed"))
            continue
        signer = str(entry.get("signer_id", "?"))
        try:
            certificate_pem = str(entry["certificate"]).encode()
            signature = base64.b64decode(str(entry["signature"]), validate=True)
            signed_at = datetime.fromisoformat(str(entry["signed_at"]))
        except (KeyError, ValueError):
            result.problems.append(Problem("signature_malformed", signer))
            continue
        name = entry.get("signer_name") or signer
        result.signers.append(str(name))
        problem = certificate_problem(certificate_pem, ca_certificate_pem, signed_at)
        if problem is not None:
            result.problems.append(Problem(problem, signer))
            continue
        if not certificate_public_key(certificate_pem).verify(data, signature):
            result.problems.append(Problem("signature_invalid", signer))
        stamp = entry.get("timestamp")
        if stamp:
            try:
                verify_timestamp(base64.b64decode(str(stamp)), signature, list(tsa_roots))
            except (TrustError, ValueError) as exc:
                result.problems.append(Problem("timestamp_mismatch", signer, str(exc)[:120]))
        elif require_timestamp:
            result.problems.append(Problem("timestamp_missing", signer))
    return result
