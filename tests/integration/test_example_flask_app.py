"""examples/flask_app.py: a missing setting is named and ``flask run`` exits 2; proxy hops."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("flask")

from credrecovery import RateLimits
from helpers import CONFIRM_URL, ROOT, SECRET, FakeClock

pytestmark = pytest.mark.slow
APP = ROOT / "examples" / "flask_app.py"


def _run(tmp_path: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("CREDRECOVERY_", "SMTP_", "FLASK_"))
    }
    env.update(settings, CREDRECOVERY_DB=str(tmp_path / "clients.sqlite3"))
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", str(APP), "run", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )


@pytest.mark.parametrize(
    ("settings", "missing"),
    [
        ({}, "CREDRECOVERY_SECRET_KEY is not set"),
        ({"CREDRECOVERY_SECRET_KEY": SECRET}, "CREDRECOVERY_CONFIRM_URL is not set"),
        (
            {"CREDRECOVERY_SECRET_KEY": SECRET, "CREDRECOVERY_CONFIRM_URL": CONFIRM_URL},
            "CREDRECOVERY_SENDER is not set",
        ),
        (
            {
                "CREDRECOVERY_SECRET_KEY": SECRET,
                "CREDRECOVERY_CONFIRM_URL": CONFIRM_URL,
                "CREDRECOVERY_SENDER": "panel@example.com",
                "SMTP_PORT": "smtp",
            },
            "SMTP_PORT",
        ),
        (
            {
                "CREDRECOVERY_SECRET_KEY": SECRET,
                "CREDRECOVERY_CONFIRM_URL": CONFIRM_URL,
                "CREDRECOVERY_SENDER": "panel@example.com",
                "SMTP_SECURITY": "ssl",
            },
            "SMTP_SECURITY",
        ),
        (
            {
                "CREDRECOVERY_SECRET_KEY": SECRET,
                "CREDRECOVERY_CONFIRM_URL": CONFIRM_URL,
                "CREDRECOVERY_SENDER": "not an address",
            },
            "sender",
        ),
    ],
)
def test_flask_run_names_a_missing_setting_and_exits_2(
    tmp_path: Path,
    settings: dict[str, str],
    missing: str,
) -> None:
    """The README's ``flask run`` without a setting names it and exits 2, with no KeyError."""
    result = _run(tmp_path, **settings)
    assert result.returncode == 2, result.stderr
    assert f"Error: {missing}" in result.stderr
    assert "Traceback" not in result.stderr and "KeyError" not in result.stderr
    assert SECRET not in result.stderr


def _load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("flask_app_example", APP)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("hops", ["", "1"], ids=["no-proxy", "behind-one-proxy"])
def test_forwarded_for_counts_only_behind_the_configured_proxies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hops: str
) -> None:
    """X-Forwarded-For names the requester only with CREDRECOVERY_PROXY_HOPS set.

    Seen through the failed-confirmation limit, one a minute per requester:
    by default two forged addresses from one peer share its count; behind a
    proxy each forwarded client has its own.
    """
    for name, value in {
        "CREDRECOVERY_SECRET_KEY": SECRET,
        "CREDRECOVERY_CONFIRM_URL": CONFIRM_URL,
        "CREDRECOVERY_SENDER": "panel@example.com",
        "CREDRECOVERY_DB": str(tmp_path / "clients.sqlite3"),
        "CREDRECOVERY_PROXY_HOPS": hops,
    }.items():
        monkeypatch.setenv(name, value)
    app = _load_example().create_app(
        {
            "rate_limits": RateLimits(failed_confirmations="1/minute"),
            "clock": FakeClock(),
            "delivery": "sync",
        }
    )
    client = app.test_client()

    def forged_link(forwarded_for: str) -> int:
        return client.get(
            "/recover/forged.token.value", headers={"X-Forwarded-For": forwarded_for}
        ).status_code

    try:
        statuses = [forged_link("203.0.113.7"), forged_link("198.51.100.9")]
        if not hops:
            assert statuses == [400, 429], "a forged X-Forwarded-For escaped the limit"
        else:
            assert statuses == [400, 400], "the forwarded clients shared one count"
            assert forged_link("203.0.113.7") == 429
    finally:
        app.extensions["credrecovery"].close()


def test_flask_run_refuses_a_malformed_proxy_count(tmp_path: Path) -> None:
    """CREDRECOVERY_PROXY_HOPS that is no count of proxies stops ``flask run`` with status 2."""
    result = _run(
        tmp_path,
        CREDRECOVERY_SECRET_KEY=SECRET,
        CREDRECOVERY_CONFIRM_URL=CONFIRM_URL,
        CREDRECOVERY_SENDER="panel@example.com",
        CREDRECOVERY_PROXY_HOPS="10.0.0.1",
    )
    assert result.returncode == 2, result.stderr
    assert "Error: CREDRECOVERY_PROXY_HOPS" in result.stderr


def test_proxy_section_quotes_the_example_verbatim() -> None:
    """docs/embedding.md's proxy section quotes examples/flask_app.py as it is."""
    text = (ROOT / "docs" / "embedding.md").read_text(encoding="utf-8")
    section = re.search(r"^## Behind a reverse proxy\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert section, "docs/embedding.md has no '## Behind a reverse proxy' section"
    excerpts = [
        block.partition("\n")[2]
        for block in re.findall(r"^```python\n(.*?)^```", section.group(1), re.M | re.S)
        if block.startswith("# examples/flask_app.py\n")
    ]
    assert excerpts
    for excerpt in excerpts:
        assert excerpt in APP.read_text(encoding="utf-8"), f"flask_app.py lacks:\n{excerpt}"
