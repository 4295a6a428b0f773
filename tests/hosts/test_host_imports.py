"""Every import path the documentation and the examples show keeps working.

The paths are read from the documents themselves: the ``python`` blocks of
README.md, docs/ and the examples' READMEs, the examples' code and the
notebook's cells. A module moved to another folder must leave its documented
path importable, or be named in CHANGELOG.md with the new path.
"""

from __future__ import annotations

import ast
import importlib
import json
import re

import pytest

from hosts.documents import ROOT, code_of, documents, python_blocks

#: Backticked names in the prose that are not Python paths.
NOT_PYTHON_NAMES = {
    "credrecovery.deliver_confirmation": "the name of the Celery task, not a Python object",
}


def sources() -> list[tuple[str, str]]:
    """(where, source) for every piece of documented or example Python code."""
    found = [(where, code_of(block)) for where, block in python_blocks().items()]
    found += [
        (str(path.relative_to(ROOT)), path.read_text(encoding="utf-8"))
        for path in sorted((ROOT / "examples").rglob("*.py"))
    ]
    for notebook in sorted((ROOT / "examples").rglob("*.ipynb")):
        cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
        found += [
            (f"{notebook.relative_to(ROOT)}#{n}", "".join(cell["source"]))
            for n, cell in enumerate(cells)
            if cell["cell_type"] == "code"
        ]
    return found


def documented_imports() -> list[tuple[str, str]]:
    """Each distinct (module, name) of ``from credrecovery... import name``; "" for ``import``."""
    pairs: set[tuple[str, str]] = set()
    for _, source in sources():
        for node in ast.walk(ast.parse(source)):
            if (
                isinstance(node, ast.ImportFrom)
                and not node.level
                and node.module
                and (node.module.split(".")[0] == "credrecovery")
            ):
                pairs.update((node.module, alias.name) for alias in node.names)
            elif isinstance(node, ast.Import):
                pairs.update(
                    (alias.name, "")
                    for alias in node.names
                    if alias.name.split(".")[0] == "credrecovery"
                )
    return sorted(pairs)


def documented_dotted_names() -> list[str]:
    """Each ``credrecovery.x.y`` the prose names in backticks."""
    names: set[str] = set()
    for page in documents():
        names.update(
            re.findall(r"`(credrecovery(?:\.[A-Za-z_]\w*)+)[`(]", page.read_text(encoding="utf-8"))
        )
    return sorted(names - NOT_PYTHON_NAMES.keys())


IMPORTS = documented_imports()
DOTTED = documented_dotted_names()


def test_the_documents_were_read() -> None:
    """The collection found the imports the README and the quick start are built on."""
    assert ("credrecovery", "RecoveryService") in IMPORTS
    assert ("credrecovery.sqlite", "SQLiteDirectory") in IMPORTS
    assert ("credrecovery.memory", "MemoryMailer") in IMPORTS
    assert "credrecovery.async_sqlite.AsyncSQLiteDirectory" in DOTTED


@pytest.mark.parametrize(
    ("module", "name"), IMPORTS, ids=[f"{m}:{n}" if n else m for m, n in IMPORTS]
)
def test_documented_import_still_works(module: str, name: str) -> None:
    """The import statement as documented runs and binds a real object."""
    namespace: dict[str, object] = {}
    statement = f"from {module} import {name}" if name else f"import {module}"
    exec(statement, namespace)
    bound = name or module.split(".")[0]
    assert namespace[bound] is not None


@pytest.mark.parametrize("dotted", DOTTED)
def test_documented_dotted_name_resolves(dotted: str) -> None:
    """A ``credrecovery.module.Name`` the prose mentions names an importable object."""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[split:]:
            obj = getattr(obj, attribute)
        return
    pytest.fail(f"nothing of {dotted} imports")


def declares_all(name: str) -> bool:
    try:
        return hasattr(importlib.import_module(name), "__all__")
    except ImportError:
        return False


# A module whose path moved drops out of this list, and fails in the two tests above.
DOCUMENTED_MODULES = sorted(m for m in {m for m, _ in IMPORTS} | set(DOTTED) if declares_all(m))


@pytest.mark.parametrize("module", DOCUMENTED_MODULES)
def test_every_public_name_of_a_documented_module_imports(module: str) -> None:
    """Each name in a documented module's ``__all__`` imports from that module."""
    loaded = importlib.import_module(module)
    public = loaded.__all__
    namespace: dict[str, object] = {}
    exec(f"from {module} import {', '.join(public)}", namespace)
    assert all(namespace[name] is getattr(loaded, name) for name in public)
