"""Work done once per test run and shared by its xdist workers: a file lock and a result on disk.

Scoring every mail with SpamAssassin, building the documentation site or
running the notebook costs seconds; each worker of a run would otherwise pay
for it again. The first worker to need a result makes it under a lock, in a
folder of the run's own temporary directory; the others wait for the lock and
read it. A result that fails to be made is not kept, so the next worker tries
again and fails alike. Without xdist the folder is the session's own, and the
work is done once as before.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

__all__ = ["shared_dir", "shared_json", "shared_tree"]


def shared_dir(factory: pytest.TempPathFactory) -> Path:
    """The folder that every worker of this run sees, and no other run."""
    base = factory.getbasetemp()
    # Under xdist each worker's base is popen-gwN inside the run's own directory;
    # without it the parent is shared by every run, so the base itself is used.
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    folder = root / "shared"
    folder.mkdir(exist_ok=True)
    return folder


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path.with_name(path.name + ".lock"), "a", encoding="ascii") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def shared_json(factory: pytest.TempPathFactory, name: str, make: Callable[[], Any]) -> Any:
    """``make()``'s value, made by the first worker that asks, kept as JSON for the others."""
    path = shared_dir(factory) / f"{name}.json"
    with _locked(path):
        if path.exists():
            return json.loads(path.read_text(encoding="utf-8"))
        value = make()
        partial = path.with_name(path.name + ".partial")
        partial.write_text(json.dumps(value), encoding="utf-8")
        partial.replace(path)
        return value


def shared_tree(factory: pytest.TempPathFactory, name: str, make: Callable[[Path], None]) -> Path:
    """A folder that ``make`` fills, made by the first worker that asks, read by the others."""
    folder = shared_dir(factory) / name
    done = folder.with_name(name + ".done")
    with _locked(folder):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            make(folder)
            done.touch()
    return folder
