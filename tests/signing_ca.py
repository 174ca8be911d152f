"""A test SM2 CA made with Debian's ``openssl`` CLI: the hospital CA that issues practitioners'
report-signing certificates (issue 14). Skips without the CLI (fails under TELECONSULT_STRICT=1)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from timestamping import need_openssl

SM2_ID_OPT = "distid:1234567812345678"


@dataclass(frozen=True)
class SigningCa:
    directory: Path

    @property
    def cert(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def key(self) -> Path:
        return self.directory / "ca.key"


def make_sm2_ca(directory: Path, name: str = "Test Hospital SM2 CA") -> SigningCa:
    openssl = need_openssl()
    directory.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=directory, check=True, capture_output=True)

    run("genpkey", "-algorithm", "SM2", "-out", "ca.key")
    run("req", "-x509", "-new", "-key", "ca.key", "-sm3", "-sigopt", SM2_ID_OPT,
        "-subj", f"/CN={name}", "-days", "30", "-out", "ca.pem")  # fmt: skip
    (directory / "ca.key").chmod(0o600)
    return SigningCa(directory)
