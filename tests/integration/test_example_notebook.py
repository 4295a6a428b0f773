"""examples/recovery.ipynb runs top to bottom in a real kernel, and a failing cell fails the run."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from helpers.notebook import NOTEBOOK, execute, executed_notebook, kernel_for_this_interpreter

if TYPE_CHECKING:
    from nbformat import NotebookNode

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    base = tmp_path_factory.mktemp("jupyter")
    with kernel_for_this_interpreter(base):
        yield base


def _code(source: str) -> NotebookNode:
    import nbformat

    return nbformat.v4.new_code_cell(source)


def _text(cell: NotebookNode) -> str:
    """Everything a code cell showed as plain text: streams and results."""
    parts = []
    for output in cell.get("outputs", []):
        if output["output_type"] == "stream":
            parts.append(output["text"])
        elif "data" in output and "text/plain" in output["data"]:
            parts.append(output["data"]["text/plain"])
    return "".join(parts)


def _html(cell: NotebookNode) -> str:
    return "".join(
        output["data"]["text/html"]
        for output in cell.get("outputs", [])
        if "data" in output and "text/html" in output["data"]
    )


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> NotebookNode:
    """The notebook, run once for the whole test run."""
    return executed_notebook(tmp_path_factory)


def test_notebook_is_committed_valid_and_without_outputs() -> None:
    """The committed notebook is valid nbformat 4, with no outputs or execution counts."""
    import nbformat

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    assert notebook.nbformat == 4
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code
    for cell in code:
        assert cell.outputs == []
        assert cell.execution_count is None


def test_notebook_runs_without_error(executed: NotebookNode) -> None:
    """Every code cell ran, and none produced an error output."""
    code = [cell for cell in executed.cells if cell.cell_type == "code"]
    assert all(cell.execution_count is not None for cell in code)
    for cell in code:
        assert all(output["output_type"] != "error" for output in cell.outputs), cell.source


def test_notebook_renders_the_outbox_inline(executed: NotebookNode) -> None:
    """The outbox and the credentials mail reach the page as text/html mail cards."""
    rendered = [_html(cell) for cell in executed.cells if cell.cell_type == "code"]
    outbox = [page for page in rendered if 'class="credrecovery-outbox"' in page]
    assert outbox, "no cell rendered the outbox as HTML"
    assert outbox[0].count('class="credrecovery-message"') == 3
    assert "<iframe sandbox srcdoc=" in outbox[0]
    single = [page for page in rendered if page.startswith('<div class="credrecovery-message"')]
    assert single, "no cell rendered the credentials mail alone"


def test_notebook_ends_with_new_key_accepted_and_old_refused(executed: NotebookNode) -> None:
    """The final cells show the new key signs in, the old one does not, and old links fail."""
    shown = "\n".join(_text(cell) for cell in executed.cells[-6:] if cell.cell_type == "code")
    assert "new key: Login(number='9000'" in shown
    assert "old key: None" in shown
    assert "first link: refused, TokenAlreadyUsed" in shown
    assert "used link: refused, TokenAlreadyUsed" in shown


def test_kernel_runs_this_interpreter_and_checkout(kernel_env: Path) -> None:
    """The notebook's kernel is this interpreter, importing this checkout's credrecovery."""
    import nbformat

    import credrecovery

    notebook = nbformat.v4.new_notebook(
        cells=[
            _code("import sys, credrecovery\nprint(sys.executable)\nprint(credrecovery.__file__)"),
        ]
    )
    shown = _text(execute(notebook, kernel_env).cells[0]).splitlines()
    assert Path(shown[0]).resolve() == Path(sys.executable).resolve()
    assert Path(shown[1]).resolve() == Path(credrecovery.__file__).resolve()


def test_a_failing_cell_fails_the_run(kernel_env: Path) -> None:
    """A copy of the notebook with one cell raising makes the executor raise."""
    import nbformat
    from nbclient.exceptions import CellExecutionError

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    notebook.cells.insert(3, _code("raise RuntimeError('this cell is broken on purpose')"))
    with pytest.raises(CellExecutionError, match="broken on purpose"):
        execute(notebook, kernel_env)
