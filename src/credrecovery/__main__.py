"""``python -m credrecovery``: see :mod:`credrecovery.cli`."""

import sys

from .cli import main

sys.exit(main())
