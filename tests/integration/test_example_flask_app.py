"""examples/flask_app.py: a missing setting is named and ``flask run`` exits 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("flask")

from helpers import CONFIRM_URL, ROOT, SECRET

APP = ROOT / "examples" / "flask_app.py"


def _run(tmp_path: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("CREDRECOVERY_", "SMTP_", "FLASK_"))}
    env.update(settings, CREDRECOVERY_DB=str(tmp_path / "clients.sqlite3"))
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", str(APP), "run", "--port", "0"],
        env=env, capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)


@pytest.mark.parametrize(("settings", "missing"), [
    ({}, "CREDRECOVERY_SECRET_KEY is not set"),
    ({"CREDRECOVERY_SECRET_KEY": SECRET}, "CREDRECOVERY_CONFIRM_URL is not set"),
    ({"CREDRECOVERY_SECRET_KEY": SECRET, "CREDRECOVERY_CONFIRM_URL": CONFIRM_URL},
     "CREDRECOVERY_SENDER is not set"),
    ({"CREDRECOVERY_SECRET_KEY": SECRET, "CREDRECOVERY_CONFIRM_URL": CONFIRM_URL,
      "CREDRECOVERY_SENDER": "panel@example.com", "SMTP_PORT": "smtp"}, "SMTP_PORT"),
    ({"CREDRECOVERY_SECRET_KEY": SECRET, "CREDRECOVERY_CONFIRM_URL": CONFIRM_URL,
      "CREDRECOVERY_SENDER": "panel@example.com", "SMTP_SECURITY": "ssl"}, "SMTP_SECURITY"),
    ({"CREDRECOVERY_SECRET_KEY": SECRET, "CREDRECOVERY_CONFIRM_URL": CONFIRM_URL,
      "CREDRECOVERY_SENDER": "not an address"}, "sender"),
])
def test_flask_run_names_a_missing_setting_and_exits_2(
    tmp_path: Path, settings: dict[str, str], missing: str,
) -> None:
    """The README's ``flask run`` without a setting names it and exits 2, with no KeyError."""
    result = _run(tmp_path, **settings)
    assert result.returncode == 2, result.stderr
    assert f"Error: {missing}" in result.stderr
    assert "Traceback" not in result.stderr and "KeyError" not in result.stderr
    assert SECRET not in result.stderr
