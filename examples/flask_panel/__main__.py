"""Run the panel on Werkzeug's development server: ``python -m examples.flask_panel``.

``PANEL_LISTEN`` (``host:port``, default ``127.0.0.1:5000``) says where it
listens. For production, serve ``examples.flask_panel:create_app()`` with a WSGI
server behind TLS instead.
"""

from __future__ import annotations

import os
import sys

from . import PanelConfigError, create_app


def main() -> int:
    try:
        app = create_app()
    except PanelConfigError as exc:
        print(f"flask_panel: {exc}", file=sys.stderr)
        return 2
    host, _, port = os.environ.get("PANEL_LISTEN", "127.0.0.1:5000").rpartition(":")
    app.run(host=host or "127.0.0.1", port=int(port or "5000"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
