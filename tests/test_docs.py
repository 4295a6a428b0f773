"""The documentation stays true: generated reference current, examples run, links resolve."""

from __future__ import annotations

import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_api_reference_is_current() -> None:
    """docs/api.md matches what docs/gen_api.py renders from today's docstrings."""
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        generated = runpy.run_path(str(ROOT / "docs" / "gen_api.py"))["render"]()
    finally:
        sys.path.remove(str(ROOT / "docs"))
    assert (ROOT / "docs" / "api.md").read_text(encoding="utf-8") == generated, (
        "run: python docs/gen_api.py"
    )


def test_notebook_example_runs(tmp_path: Path) -> None:
    """examples/recovery.ipynb runs every cell in a kernel of this interpreter without error."""
    import nbformat

    from test_example_notebook import NOTEBOOK, execute, kernel_for_this_interpreter

    with kernel_for_this_interpreter(tmp_path):
        executed = execute(nbformat.read(NOTEBOOK, as_version=4), tmp_path)
    code = [cell for cell in executed.cells if cell.cell_type == "code"]
    assert code and all(cell.execution_count is not None for cell in code)


def test_demo_runs() -> None:
    """`python -m credrecovery demo` rotates the key and exits 0."""
    result = subprocess.run(
        [sys.executable, "-m", "credrecovery", "demo"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Old key accepted: False. New key accepted: True." in result.stdout
    assert "An earlier confirmation link now fails: TokenAlreadyUsed." in result.stdout


PAGES = ["README.md", *sorted(p.name for p in (ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("page", PAGES)
def test_relative_links_resolve(page: str) -> None:
    """Every relative link in the README and docs points at a file that exists."""
    path = ROOT / page if page == "README.md" else ROOT / "docs" / page
    text = path.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if "://" in target or target.startswith("mailto:"):
            continue
        assert (path.parent / target).exists(), f"{page} links to missing {target}"
