"""Compatibility path: the code lives in credrecovery.mail.i18n."""

import sys

from .mail import i18n as _module
from .mail.i18n import (
    DOMAIN as DOMAIN,
)
from .mail.i18n import (
    PACKAGED_CATALOGS as PACKAGED_CATALOGS,
)
from .mail.i18n import (
    available_languages as available_languages,
)
from .mail.i18n import (
    catalog_dirs as catalog_dirs,
)
from .mail.i18n import (
    compile_po as compile_po,
)
from .mail.i18n import (
    format_datetime as format_datetime,
)
from .mail.i18n import (
    format_timedelta as format_timedelta,
)
from .mail.i18n import (
    language_tag as language_tag,
)
from .mail.i18n import (
    negotiate as negotiate,
)
from .mail.i18n import (
    normalize_locale as normalize_locale,
)
from .mail.i18n import (
    text_direction as text_direction,
)
from .mail.i18n import (
    translations as translations,
)

__all__ = [
    "DOMAIN",
    "PACKAGED_CATALOGS",
    "available_languages",
    "catalog_dirs",
    "compile_po",
    "format_datetime",
    "format_timedelta",
    "language_tag",
    "negotiate",
    "normalize_locale",
    "text_direction",
    "translations",
]

# Private names, monkeypatching and isinstance then reach the one module.
sys.modules[__name__] = _module
