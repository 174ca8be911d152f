"""The reminder task's configuration (issue 14): validated at load; the webhook's signing key is
made in the data directory (mode 0600) only when a webhook URL is set, never in the repository."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from web.app import create_app
from web.config import load_config
from web.keys import REMINDERS


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("REMINDER_INTERVAL_S", "-1", "reminder_interval_s"),
        ("REMINDER_WEBHOOK_URL", "ftp://gateway/hook", "reminder_webhook_url"),
        ("REMINDER_WEBHOOK_SECRET", "short", "reminder_webhook_secret"),
        ("REMINDER_WEBHOOK_ATTEMPTS", "0", "reminder_webhook_attempts"),
        ("REMINDER_WEBHOOK_TIMEOUT_S", "0", "reminder_webhook_timeout_s"),
    ],
)
def test_bad_reminder_settings_are_refused(key: str, value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_config(environ={f"TELECONSULT_{key}": value})


def test_settings_from_toml_and_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "teleconsult.toml"
    path.write_text(
        'reminder_interval_s = 30\nreminder_webhook_url = "https://sms.example/hook"\n'
        "reminder_webhook_attempts = 7\n"
    )
    config = load_config(path, environ={"TELECONSULT_REMINDER_WEBHOOK_TIMEOUT_S": "2.5"})
    assert config.reminder_interval_s == 30.0
    assert config.reminder_webhook_url == "https://sms.example/hook"
    assert (config.reminder_webhook_attempts, config.reminder_webhook_timeout_s) == (7, 2.5)
    assert load_config(environ={}).reminder_interval_s == 60.0


async def test_the_webhook_key_is_made_in_the_data_directory_only_with_a_webhook(
    tmp_path: Path,
) -> None:
    quiet = load_config(data_dir=str(tmp_path / "a"))
    task = create_app(quiet)[REMINDERS]
    assert task.webhook_url == ""
    assert not (tmp_path / "a" / "reminder_webhook.key").exists()

    config = load_config(data_dir=str(tmp_path / "b"), reminder_webhook_url="http://127.0.0.1:9/x")
    create_app(config)
    key = tmp_path / "b" / "reminder_webhook.key"
    assert len(key.read_text().strip()) >= 32
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert config.reminder_webhook_key() == key.read_text().strip()  # the same on restart
