"""The documentation stays true: examples run, the reference covers the API, links resolve."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

import credrecovery
from helpers import ROOT
from helpers.notebook import executed_notebook

DOCS = ROOT / "docs"
REFERENCE = DOCS / "reference"

#: Modules whose every ``__all__`` name the API reference renders.
REFERENCED_MODULES = [
    "credrecovery",
    "credrecovery.service",
    "credrecovery.protocols",
    "credrecovery.identifiers",
    "credrecovery.tokens",
    "credrecovery.codes",
    "credrecovery.keys",
    "credrecovery.ratelimit",
    "credrecovery.jobs",
    "credrecovery.composer",
    "credrecovery.delivery",
    "credrecovery.sealing",
    "credrecovery.celery",
    "credrecovery.messages",
    "credrecovery.memory",
    "credrecovery.sqlite",
    "credrecovery.sqlalchemy",
    "credrecovery.smtp",
    "credrecovery.async_sqlite",
    "credrecovery.async_sqlalchemy",
    "credrecovery.async_smtp",
    "credrecovery.testing",
    "credrecovery.events",
    "credrecovery.metrics",
]


def fenced(text: str, language: str) -> list[str]:
    """The bodies of the ``language`` fenced blocks of a Markdown text, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```$", text, re.DOTALL | re.MULTILINE)


def resolve(path: str) -> object:
    """The object a ``:::`` identifier names: a module, or an attribute of one."""
    try:
        return importlib.import_module(path)
    except ModuleNotFoundError:
        module, _, name = path.rpartition(".")
        return getattr(importlib.import_module(module), name)


def directives() -> dict[str, object]:
    """Every ``::: identifier`` of the reference pages, resolved."""
    found = {}
    for page in sorted(REFERENCE.glob("*.md")):
        for identifier in re.findall(
            r"^::: (\S+)$", page.read_text(encoding="utf-8"), re.MULTILINE
        ):
            found[identifier] = resolve(identifier)
    return found


def test_reference_covers_every_public_name() -> None:
    """Each name in the __all__ of the package and its modules is rendered by some ``:::``.

    Either a directive names the object itself, or it renders a whole module
    (with ``filters: public``) whose ``__all__`` holds it.
    """
    rendered = directives()
    objects = [obj for obj in rendered.values() if not isinstance(obj, ModuleType)]
    modules = [
        obj for obj in rendered.values() if isinstance(obj, ModuleType) and obj is not credrecovery
    ]
    missing = []
    for module_name in REFERENCED_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            if any(obj is other for other in objects):
                continue
            if any(name in getattr(m, "__all__", ()) and getattr(m, name) is obj for m in modules):
                continue
            missing.append(f"{module_name}.{name}")
    assert missing == [], "add a ::: directive to a docs/reference page for each"


def test_every_reference_page_is_in_the_nav() -> None:
    """mkdocs.yml lists each page of docs/, so that none is left out of the site."""
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))

    def pages(nav: object) -> list[str]:
        if isinstance(nav, str):
            return [nav]
        if isinstance(nav, dict):
            return [p for value in nav.values() for p in pages(value)]
        if isinstance(nav, list):
            return [p for item in nav for p in pages(item)]
        return []

    listed = set(pages(config["nav"]))
    present = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    assert present - listed == set()
    assert listed - present == set()


def test_site_build_needs_no_network() -> None:
    """No web fonts, no plugin that downloads, no inventories fetched, and a strict build."""
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    assert config["strict"] is True
    assert config["theme"]["font"] is False
    plugins = [p if isinstance(p, str) else next(iter(p)) for p in config["plugins"]]
    assert set(plugins) <= {"search", "mkdocstrings"}, plugins
    python = config["plugins"][plugins.index("mkdocstrings")]["mkdocstrings"]
    handler = python["handlers"]["python"]
    assert "import" not in handler and "inventories" not in handler
    assert handler["options"]["docstring_style"] == "sphinx"
    for kind in ("links", "nav"):
        assert set(config["validation"][kind].values()) == {"warn"}, kind


@pytest.mark.slow  # runs it in a fresh interpreter
def test_quickstart_runs(tmp_path: Path) -> None:
    """docs/quickstart.md's script, as written, runs the flow and rotates the key."""
    [script] = fenced((DOCS / "quickstart.md").read_text(encoding="utf-8"), "python")
    (tmp_path / "recover.py").write_text(script, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-W", "error", "recover.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "To: Ana Example <ana@example.com> / Confirm your client panel recovery request",
        "Confirm access for client 9000",
        "Rotated the key of client 9000",
        "The link no longer works.",
    ]
    assert list(tmp_path.iterdir()) == [tmp_path / "recover.py"]


def test_custom_adapters_quotes_the_tested_examples() -> None:
    """The host-written directory test is quoted whole, the SMTP mailer classes verbatim."""
    blocks = fenced((DOCS / "custom-adapters.md").read_text(encoding="utf-8"), "python")
    host = (ROOT / "tests" / "adapters" / "test_host_directory.py").read_text(encoding="utf-8")
    assert host in blocks
    mailers = (ROOT / "tests" / "adapters" / "test_mailer_contract.py").read_text(encoding="utf-8")
    assert any(
        "(ThroughSMTPServer, MailerContract)" in block and block in mailers for block in blocks
    )


@pytest.mark.slow
def test_notebook_example_runs(tmp_path_factory: pytest.TempPathFactory) -> None:
    """examples/recovery.ipynb runs every cell in a kernel of this interpreter without error."""
    executed = executed_notebook(tmp_path_factory)
    code = [cell for cell in executed.cells if cell.cell_type == "code"]
    assert code and all(cell.execution_count is not None for cell in code)


@pytest.mark.slow  # runs it in a fresh interpreter
def test_demo_runs() -> None:
    """`python -m credrecovery demo` rotates the key and exits 0."""
    result = subprocess.run(
        [sys.executable, "-m", "credrecovery", "demo"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Old key accepted: False. New key accepted: True." in result.stdout
    assert "An earlier confirmation link now fails: TokenAlreadyUsed." in result.stdout


PAGES = ["README.md", *sorted(p.relative_to(ROOT).as_posix() for p in DOCS.rglob("*.md"))]


@pytest.mark.parametrize("page", PAGES)
def test_relative_links_resolve(page: str) -> None:
    """Every relative link in the README and docs points at a file that exists."""
    path = ROOT / page
    text = path.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if "://" in target or target.startswith("mailto:"):
            continue
        assert (path.parent / target).exists(), f"{page} links to missing {target}"
