"""examples/recovery.ipynb run in a real Jupyter kernel of this interpreter.

:func:`executed_notebook` runs the notebook once per test run, in the first
xdist worker that asks, and hands every asker the executed copy.
nbclient and nbformat are imported when first used: they take seconds to load.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from helpers.constants import ROOT
from helpers.once import shared_tree

if TYPE_CHECKING:
    from nbformat import NotebookNode

__all__ = [
    "CELL_TIMEOUT",
    "KERNEL",
    "NOTEBOOK",
    "execute",
    "executed_notebook",
    "kernel_for_this_interpreter",
]

NOTEBOOK = ROOT / "examples" / "recovery.ipynb"
KERNEL = "credrecovery-tests"
CELL_TIMEOUT = 60


@contextmanager
def kernel_for_this_interpreter(base: Path) -> Iterator[None]:
    """Within, kernel :data:`KERNEL` runs this interpreter, and Jupyter keeps its files in ``base``.

    The kernelspec names ``sys.executable`` itself and comes first on
    ``JUPYTER_PATH``, so the kernel imports the credrecovery this test run
    imports, whatever other kernels are installed.
    """
    spec = base / "data" / "kernels" / KERNEL
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "credrecovery tests",
                "language": "python",
            }
        ),
        encoding="utf-8",
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JUPYTER_PATH", str(base / "data"))
        patch.setenv("JUPYTER_RUNTIME_DIR", str(base / "runtime"))
        patch.setenv("JUPYTER_PLATFORM_DIRS", "1")
        patch.setenv("IPYTHONDIR", str(base / "ipython"))
        yield


def execute(notebook: NotebookNode, workdir: Path) -> NotebookNode:
    """Run every cell of ``notebook`` in kernel :data:`KERNEL`, from ``workdir``.

    Raises :class:`nbclient.exceptions.CellExecutionError` when a cell raises,
    and times out a cell that runs longer than :data:`CELL_TIMEOUT` seconds.
    """
    import nbclient

    client = nbclient.NotebookClient(
        notebook,
        kernel_name=KERNEL,
        timeout=CELL_TIMEOUT,
        startup_timeout=60,
        resources={"metadata": {"path": str(workdir)}},
    )
    return client.execute()


def executed_notebook(factory: pytest.TempPathFactory) -> NotebookNode:
    """examples/recovery.ipynb as a kernel of this interpreter ran it, top to bottom."""
    import nbformat

    def run(folder: Path) -> None:
        with kernel_for_this_interpreter(folder):
            ran = execute(nbformat.read(NOTEBOOK, as_version=4), folder)
        nbformat.write(ran, folder / "executed.ipynb")

    folder = shared_tree(factory, "notebook", run)
    return nbformat.read(folder / "executed.ipynb", as_version=4)
