"""A local RFC 3161 time-stamping authority for tests: ``openssl ts -reply`` behind aiohttp.

:func:`make_authority` makes a CA (EC P-256) and a TSA certificate it issues (critical
extended key usage timeStamping) with Debian's ``openssl`` CLI; :func:`serve_authority` answers
``application/timestamp-query`` POSTs on 127.0.0.1. A test without the CLI skips (fails under
``TELECONSULT_STRICT=1``).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from harness import skip_or_fail

_CONF = """
[ req ]
distinguished_name = dn
prompt = no
[ dn ]
CN = teleconsult test
[ ca_ext ]
basicConstraints = critical,CA:true
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[ tsa_ext ]
basicConstraints = critical,CA:false
keyUsage = critical,digitalSignature
extendedKeyUsage = critical,timeStamping
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ tsa ]
default_tsa = tsa_config
[ tsa_config ]
dir = {dir}
serial = {dir}/serial
crypto_device = builtin
signer_cert = {dir}/tsa.pem
signer_key = {dir}/tsa.key
signer_digest = sha256
default_policy = 1.2.3.4.1
digests = sha256, sha512, sm3
accuracy = secs:1
ordering = yes
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""


@dataclass(frozen=True)
class Authority:
    directory: Path

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def config(self) -> Path:
        return self.directory / "tsa.cnf"


def need_openssl() -> str:
    openssl = shutil.which("openssl")
    if openssl is None:
        skip_or_fail("needs the openssl CLI (Debian package openssl)")
    assert openssl is not None
    return openssl


def make_authority(directory: Path) -> Authority:
    openssl = need_openssl()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tsa.cnf").write_text(_CONF.format(dir=directory))
    (directory / "serial").write_text("01\n")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=directory, check=True, capture_output=True)

    run("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key")
    run("req", "-new", "-x509", "-key", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=Test CA", "-config", "tsa.cnf", "-extensions", "ca_ext")  # fmt: skip
    run("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "tsa.key")
    run("req", "-new", "-key", "tsa.key", "-subj", "/CN=Test TSA", "-config", "tsa.cnf",
        "-out", "tsa.csr")  # fmt: skip
    run("x509", "-req", "-in", "tsa.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "tsa.cnf", "-extensions", "tsa_ext",
        "-out", "tsa.pem")  # fmt: skip
    return Authority(directory)


@asynccontextmanager
async def serve_authority(authority: Authority) -> AsyncIterator[str]:
    """The authority on 127.0.0.1; yields its URL."""
    openssl = need_openssl()

    async def reply(request: web.Request) -> web.Response:
        query = await request.read()
        with tempfile.TemporaryDirectory() as scratch:
            query_file, reply_file = Path(scratch) / "q.tsq", Path(scratch) / "r.tsr"
            query_file.write_bytes(query)
            process = await asyncio.create_subprocess_exec(
                openssl, "ts", "-reply", "-config", str(authority.config),
                "-queryfile", str(query_file), "-out", str(reply_file),
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
            await process.wait()
            if process.returncode != 0 or not reply_file.exists():
                return web.Response(status=500)
            return web.Response(
                body=reply_file.read_bytes(), content_type="application/timestamp-reply"
            )

    app = web.Application()
    app.router.add_post("/", reply)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        await runner.cleanup()
