"""Write docs/api.md from the public docstrings: ``python docs/gen_api.py``.

tests/test_docs.py fails when docs/api.md is out of date.
"""

from __future__ import annotations

import enum
import importlib
import inspect
import sys
from pathlib import Path

MODULES = {
    "credrecovery": None,  # the names in __all__
    "credrecovery.memory": ["MemoryDirectory", "MemoryMailer", "Outbox", "MessageView",
                            "render_html"],
    "credrecovery.sqlite": ["SQLiteDirectory"],
    "credrecovery.sqlalchemy": ["SQLAlchemyDirectory", "TableMapping"],
    "credrecovery.smtp": ["SMTPMailer"],
    "credrecovery.async_sqlite": ["AsyncSQLiteDirectory"],
    "credrecovery.async_sqlalchemy": ["AsyncSQLAlchemyDirectory"],
    "credrecovery.async_smtp": ["AsyncSMTPMailer"],
    "credrecovery.delivery": ["compose", "failure_details"],
    "credrecovery.sealing": ["JobSealer"],
    "credrecovery.celery": ["CeleryDelivery", "TASK_NAME"],
}
TARGET = Path(__file__).with_name("api.md")


def _doc(obj: object) -> str:
    return inspect.cleandoc(obj.__doc__ or "").strip()


def _signature(obj: object) -> str:
    for eval_str in (True, False):
        try:
            return str(inspect.signature(obj, eval_str=eval_str))  # type: ignore[arg-type]
        except (NameError, TypeError, ValueError):
            continue
    return ""


def _members(cls: type) -> list[str]:
    out = []
    for name, member in vars(cls).items():
        if name.startswith("_") and name not in ("__init__",):
            continue
        if name == "__init__" or not (inspect.isfunction(member) or isinstance(member, property)):
            continue
        doc = _doc(member)
        if not doc:
            continue
        if isinstance(member, property):
            out.append(f"- **`{name}`** (property): {doc}")
        else:
            out.append(f"- **`{name}{_signature(member)}`**\n\n" + "\n".join(
                "  " + line if line else "" for line in doc.splitlines()))
    return out


def render() -> str:
    parts = ["# API reference", "",
             "Generated from the docstrings by `python docs/gen_api.py`; do not edit by hand.", ""]
    for module_name, names in MODULES.items():
        module = importlib.import_module(module_name)
        parts += [f"## `{module_name}`", "", _doc(module), ""]
        for name in names if names is not None else module.__all__:
            obj = getattr(module, name)
            kind = "class" if inspect.isclass(obj) else "function" if callable(obj) else "value"
            if kind == "class" and issubclass(obj, BaseException):
                bases = ", ".join(b.__name__ for b in obj.__bases__)
                parts += [f"### exception `{name}({bases})`", "", _doc(obj), ""]
                continue
            if kind == "class" and issubclass(obj, enum.Enum):
                members = ", ".join(f"`{m.name} = {m.value!r}`" for m in obj)
                parts += [f"### enum `{name}`", "", _doc(obj), "", f"Members: {members}.", ""]
                continue
            if kind == "value":
                parts += [f"### value `{name} = {obj!r}`", ""]
                continue
            parts += [f"### {kind} `{name}{_signature(obj)}`", "", _doc(obj), ""]
            if kind == "class":
                members = _members(obj)
                if members:
                    parts += [*members, ""]
    return "\n".join(parts).rstrip() + "\n"


if __name__ == "__main__":
    TARGET.write_text(render(), encoding="utf-8")
    sys.stdout.write(f"wrote {TARGET}\n")
