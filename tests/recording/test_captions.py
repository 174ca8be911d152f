"""The composite's captions: the font must cover Chinese, and a label is one clean line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from harness import skip_or_fail

from recording import captions


def test_a_font_without_chinese_is_refused_not_drawn_as_boxes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if shutil.which("fc-match") is None:
        skip_or_fail("needs fontconfig (fc-match)")
    latin = Path("/usr/share/fonts/truetype/dejavu")
    if not latin.is_dir():
        skip_or_fail("needs a Latin-only font directory (fonts-dejavu-core)")
    config = tmp_path / "fonts.conf"
    config.write_text(
        '<?xml version="1.0"?><fontconfig>'
        f"<dir>{latin}</dir><cachedir>{tmp_path / 'cache'}</cachedir></fontconfig>"
    )
    monkeypatch.setenv("FONTCONFIG_FILE", str(config))
    # fontconfig answers with a DejaVu face for zh-cn here: it must not be taken
    assert captions.find_cjk_font.__wrapped__() is None


def test_the_installed_chinese_font_is_found() -> None:
    font = captions.find_cjk_font.__wrapped__()
    if font is None:
        skip_or_fail("needs a Chinese font (fonts-noto-cjk: scripts/setup --test)")
    assert font is not None and Path(font.file).is_file() and font.family


def test_a_label_is_one_short_line() -> None:
    assert captions.clean_label(" 医生\n王\t某\x00 ") == "医生 王 某"
    long = captions.clean_label("患" * 40)
    assert len(long) == captions.LABEL_CHARS and long.endswith("…")
