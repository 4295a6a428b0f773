"""Build hook: compiles the gettext catalogs (.po) into the wheel as .mo files.

The .mo files are built into a temporary directory and force-included, so the
source tree holds only the .po files; at run time credrecovery.i18n reads the
.po itself when no .mo is there (a source checkout, an editable install).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

_LOCALES = Path("src", "credrecovery", "locales")


class CatalogBuildHook(BuildHookInterface):  # type: ignore[misc]
    """Compile ``src/credrecovery/locales/*/LC_MESSAGES/*.po`` for wheels."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or version == "editable":
            return
        from babel.messages.mofile import write_mo
        from babel.messages.pofile import read_po

        self._out = Path(tempfile.mkdtemp(prefix="credrecovery-mo-"))
        root = Path(self.root)
        for po in sorted((root / _LOCALES).glob("*/LC_MESSAGES/*.po")):
            relative = po.relative_to(root / _LOCALES).with_suffix(".mo")
            target = self._out / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            with po.open("rb") as stream:
                catalog = read_po(stream, locale=relative.parts[0])
            with target.open("wb") as stream:
                write_mo(stream, catalog)
            build_data["force_include"][str(target)] = str(
                Path("credrecovery", "locales", relative))

    def finalize(self, version: str, build_data: dict[str, Any],
                 artifact_path: str) -> None:
        out = getattr(self, "_out", None)
        if out is not None:
            shutil.rmtree(out, ignore_errors=True)
