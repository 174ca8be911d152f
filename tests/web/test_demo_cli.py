"""``teleconsult demo`` prints links for the port the server runs on and warns when none runs."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from web.cli import main


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _demo(tmp_path: Path, capsys: pytest.CaptureFixture[str], port: int) -> tuple[dict, str]:
    rc = main(["demo", "--data-dir", str(tmp_path), "--port", str(port), "--json"])
    assert rc == 0
    out, err = capsys.readouterr()
    return json.loads(out), err


def test_demo_links_name_the_given_port_and_warn_when_nothing_listens(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    for key in ("TELECONSULT_PORT", "TELECONSULT_HOST", "TELECONSULT_DATA_DIR"):
        monkeypatch.delenv(key, raising=False)
    port = _free_port()
    result, err = _demo(tmp_path, capsys, port)
    for link in result["links"].values():
        parts = urlsplit(link)
        assert (parts.hostname, parts.port, parts.path) == ("127.0.0.1", port, "/room")
    assert "nothing answers at http://127.0.0.1:" in err and str(port) in err


def test_demo_reads_the_configured_port_and_is_quiet_when_the_server_listens(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        monkeypatch.setenv("TELECONSULT_PORT", str(port))
        rc = main(["demo", "--data-dir", str(tmp_path), "--json"])
        out, err = capsys.readouterr()
    assert rc == 0
    assert all(urlsplit(link).port == port for link in json.loads(out)["links"].values())
    assert "nothing answers" not in err


def test_demo_with_a_companion_gives_a_third_link_to_the_same_room(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    """``--companion``: a family member beside the patient (R4's call of three), admitted, with
    its own join token for the visit's room in the room role ``companion``."""
    from consult.tokens import verify_join_token
    from web.config import load_config

    for key in ("TELECONSULT_PORT", "TELECONSULT_HOST", "TELECONSULT_DATA_DIR"):
        monkeypatch.delenv(key, raising=False)
    rc = main(
        ["demo", "--data-dir", str(tmp_path), "--port", str(_free_port()), "--json", "--companion"]
    )
    assert rc == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["links"]) == {"doctor", "patient", "companion"}
    secret = load_config(data_dir=tmp_path).secret()
    claims = {
        role: verify_join_token(secret, urlsplit(link).fragment.removeprefix("token="))
        for role, link in result["links"].items()
    }
    assert claims["companion"].role == "companion"
    assert len({c.room_id for c in claims.values()}) == 1
    assert len({c.user_id for c in claims.values()}) == 3
