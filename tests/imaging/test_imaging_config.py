"""The imaging settings: the C-STORE SCP is off by default, on by configuration (R20)."""

from __future__ import annotations

from pathlib import Path

import pytest

from web.config import Config, load_config


def test_scp_is_off_by_default_and_peers_come_from_toml_only(tmp_path: Path) -> None:
    assert Config().dicom_port == 0
    assert Config().imaging_render_workers == 0  # renderings in threads unless configured
    assert Config(data_dir=tmp_path).imaging == tmp_path / "imaging"
    config_file = tmp_path / "server.toml"
    config_file.write_text(
        'dicom_port = 11112\ndicom_ae_title = "HOSPITAL_A"\nimaging_max_instance_mb = 64\n'
        '[dicom_peers]\nCT_ROOM_1 = "0123456789abcdef0123456789abcdef"\n'
    )
    config = load_config(config_file, environ={"TELECONSULT_DICOM_PEERS": "EVIL=somewhere"})
    assert config.dicom_port == 11112 and config.dicom_ae_title == "HOSPITAL_A"
    assert config.dicom_peers == {"CT_ROOM_1": "0123456789abcdef0123456789abcdef"}
    assert config.imaging_max_instance_mb == 64
    assert load_config(environ={"TELECONSULT_DICOM_PORT": "104"}).dicom_port == 104
    # R33: one address may not take every association slot, nor an idle peer keep one
    assert (Config().dicom_max_associations, Config().dicom_max_associations_per_address) == (
        10,
        4,
    )
    assert load_config(environ={"TELECONSULT_DICOM_IDLE_S": "60"}).dicom_idle_s == 60


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("dicom_port = 70000\n", "dicom_port"),
        ('dicom_ae_title = "THIS_TITLE_IS_TOO_LONG"\n', "dicom_ae_title"),
        ("imaging_max_instance_mb = 0\n", "imaging_max_instance_mb"),
        ("imaging_render_workers = -1\n", "imaging_render_workers"),
        ('[dicom_peers]\nTHIS_TITLE_IS_TOO_LONG = "x"\n', "AE title"),
        ("dicom_max_associations = 0\n", "dicom_max_associations"),
        (
            "dicom_max_associations = 3\ndicom_max_associations_per_address = 4\n",
            "dicom_max_associations_per_address",
        ),
        ("dicom_idle_s = 0\n", "dicom_idle_s"),
    ],
)
def test_bad_imaging_settings_are_refused(tmp_path: Path, text: str, message: str) -> None:
    config_file = tmp_path / "server.toml"
    config_file.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_config(config_file, environ={})
