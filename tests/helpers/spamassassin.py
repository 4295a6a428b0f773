"""SpamAssassin, local tests only, scoring many mails at once.

No DNS, no network, no Bayes, no learning, a site configuration of its own
and a throw-away home, so nothing persists. Loading the rules costs about a
second and scoring a mail a tenth of one, so the mails are scored as a few
mboxes, one ``spamassassin --local --mbox`` process per core.
"""

from __future__ import annotations

import concurrent.futures
import functools
import mailbox
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default
from pathlib import Path

__all__ = ["SPAMASSASSIN", "Verdict", "score"]

SPAMASSASSIN = shutil.which("spamassassin")

LOCAL_CF = """\
use_bayes 0
bayes_auto_learn 0
dns_available no
skip_rbl_checks 1
use_razor2 0
use_pyzor 0
report_safe 0
clear_headers
add_header all Status _YESNO_, score=_SCORE_ required=_REQD_ tests=_TESTSSCORES(,)_
"""


@dataclass(frozen=True)
class Verdict:
    """What SpamAssassin made of one mail."""

    score: float
    hits: dict[str, float]


def score(root: Path, mails: dict[str, EmailMessage]) -> dict[str, Verdict]:
    """SpamAssassin's verdict on each of ``mails``, by the same keys, working in ``root``.

    Each mail needs a Message-ID of its own: the verdicts are matched by it.
    """
    assert SPAMASSASSIN is not None, "spamassassin is not on PATH"
    site = root / "site"
    site.mkdir()
    # The distribution's plugin list, so that the rules that need a plugin run.
    for pre in Path("/etc/spamassassin").glob("*.pre"):
        shutil.copy(pre, site / pre.name)
    assert (site / "init.pre").exists(), "no /etc/spamassassin/init.pre to load plugins from"
    (site / "local.cf").write_text(LOCAL_CF, encoding="ascii")
    (root / "user_prefs").write_text("", encoding="ascii")
    (root / "home").mkdir()
    by_id = {str(message["Message-ID"]): key for key, message in mails.items()}
    assert len(by_id) == len(mails), "two mails share a Message-ID"
    data = [message.as_bytes() for message in mails.values()]
    shares = max(1, min(os.cpu_count() or 1, 4))
    boxes = []
    for share in range(shares):
        box = mailbox.mbox(root / f"share{share}.mbox", create=True)
        for message in data[share::shares]:
            box.add(message)
        box.close()
        boxes.append(root / f"share{share}.mbox")
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(shares) as pool:
        outputs = list(pool.map(functools.partial(_score_mbox, root, site), boxes))
    print(
        f"spamassassin scored {len(data)} mails in {time.monotonic() - started:.1f} s "
        f"with {shares} processes"
    )
    verdicts: dict[str, Verdict] = {}
    for scored in (message for output in outputs for message in _split_mbox(output)):
        status = "".join(str(scored["X-Spam-Status"]).split())
        match = re.search(r"score=(-?[\d.]+)required=[\d.]+tests=(.*)", status)
        assert match, status
        hits = {
            name: float(value)
            for name, _, value in (
                item.partition("=") for item in match.group(2).split(",") if item
            )
        }
        verdicts[by_id[str(scored["Message-ID"])]] = Verdict(float(match.group(1)), hits)
    assert set(verdicts) == set(mails)
    return verdicts


def _score_mbox(root: Path, site: Path, box: Path) -> bytes:
    assert SPAMASSASSIN is not None
    with open(box, "rb") as stdin:
        result = subprocess.run(
            [
                SPAMASSASSIN,
                "--local",
                "--mbox",
                f"--siteconfigpath={site}",
                f"--prefspath={root / 'user_prefs'}",
            ],
            stdin=stdin,
            capture_output=True,
            timeout=280,
            check=False,
            env={
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "HOME": str(root / "home"),
                "LANG": "C.UTF-8",
            },
        )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return result.stdout


def _split_mbox(data: bytes) -> list[EmailMessage]:
    chunks = re.split(rb"(?m)^From [^\n]*\n", data)
    return [BytesParser(policy=default).parsebytes(chunk) for chunk in chunks if chunk.strip()]
