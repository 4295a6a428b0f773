"""Import a module first in a fresh interpreter, cheaply: one server forks a child per module.

The server loads, once, every third-party module that importing the whole
package loads, and never credrecovery itself; each child it forks then
imports one credrecovery module as the first of the package, as a fresh
interpreter would, without paying again for SQLAlchemy, Jinja2 or Celery.
Python runs a package's ``__init__`` before any of its modules, so a module
that ``credrecovery/__init__.py`` loads imports first exactly as the package
does: those get the package's own answer, and only the others a child each.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterable

__all__ = ["FreshImporter"]

_SERVER = r"""
import atexit, importlib, json, os, shutil, sys, tempfile, traceback

# The first child compiles every module of the package; the others read its
# bytecode from a folder of the server's own, whatever PYTHONDONTWRITEBYTECODE says.
sys.pycache_prefix = tempfile.mkdtemp(prefix="fresh-imports-")
sys.dont_write_bytecode = False
atexit.register(shutil.rmtree, sys.pycache_prefix, True)

def imported(names):
    failures = {}
    for name in names:
        try:
            importlib.import_module(name)
        except BaseException:
            failures[name] = traceback.format_exc()
    return failures

def in_child(work):
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            answer = work()
        except BaseException:
            answer = traceback.format_exc()
        with os.fdopen(write, "w") as out:
            out.write(json.dumps(answer))
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as answer:
        text = answer.read()
    os.waitpid(pid, 0)
    return json.loads(text)

def others_loaded(names):
    before = set(sys.modules)
    imported(names)
    return [name for name in sys.modules
            if name not in before and name.split(".")[0] != "credrecovery"]

def package_alone():
    failure = imported(["credrecovery"]).get("credrecovery")
    return [failure, [name for name in sys.modules if name.split(".")[0] == "credrecovery"]]

everything = json.loads(sys.argv[1])
imported(in_child(lambda: others_loaded(everything)))
assert not any(name.split(".")[0] == "credrecovery" for name in sys.modules)
package_failure, loaded_by_package = in_child(package_alone)
print("ready", flush=True)
for line in sys.stdin:
    name = line.strip()
    if name in loaded_by_package:
        # Importing it first runs credrecovery/__init__.py first, which loads
        # it: the very import of the package alone, already answered.
        answer = package_failure
    else:
        answer = in_child(lambda: imported([name]).get(name))
    print(json.dumps(answer), flush=True)
"""


class FreshImporter:
    """Answers, for one module at a time, the traceback of importing it first, or ``None``."""

    def __init__(self, modules: Iterable[str]) -> None:
        self._server = subprocess.Popen(
            [sys.executable, "-c", _SERVER, json.dumps(list(modules))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._server.stdout is not None
        assert self._server.stdout.readline().strip() == "ready"

    def failure(self, module: str) -> str | None:
        """The traceback of importing ``module`` first in a fresh package, or ``None``."""
        assert self._server.stdin is not None and self._server.stdout is not None
        self._server.stdin.write(module + "\n")
        self._server.stdin.flush()
        answer: str | None = json.loads(self._server.stdout.readline())
        return answer

    def close(self) -> None:
        """End the server."""
        assert self._server.stdin is not None and self._server.stdout is not None
        self._server.stdin.close()
        self._server.wait(30)
        self._server.stdout.close()
