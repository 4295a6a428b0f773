"""Languages: gettext catalogs, choosing a language, and formatting dates for it.

The library's texts live in gettext catalogs of the domain ``credrecovery``,
one directory per locale: ``<dir>/<locale>/LC_MESSAGES/credrecovery.mo`` (or
``.po``, compiled on first use, so a source checkout works without a build
step). A host adds a language, or rewords one, with a catalog directory of its
own, searched before the packaged one. Dates and durations are formatted
with Babel's locale data, so they follow the language even without a catalog.
"""

from __future__ import annotations

import functools
import gettext
import io
import os
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import babel.dates
import babel.lists
import babel.units
from babel import Locale, UnknownLocaleError

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

#: The gettext domain of the library's catalogs.
DOMAIN = "credrecovery"
#: Where the packaged catalogs (English and Spanish) live.
PACKAGED_CATALOGS = Path(__file__).parent.parent / "locales"

_LOCALE = re.compile(r"([A-Za-z]{2,3})(?:[-_]([A-Za-z]{4}))?(?:[-_]([A-Za-z]{2}|[0-9]{3}))?")


def normalize_locale(tag: str | None) -> str | None:
    """``tag`` as a gettext locale name (``"pt_BR"``, ``"es"``), or ``None`` if it is not one.

    Accepts ``"pt-BR"``, ``"pt_br"``, ``"es_AR.UTF-8"`` and ``"sr-Latn-RS"``.
    """
    if not isinstance(tag, str):
        return None
    base = re.split(r"[.@]", tag.strip(), maxsplit=1)[0]
    match = _LOCALE.fullmatch(base)
    if match is None:
        return None
    language, script, territory = match.groups()
    parts = [language.lower()]
    if script:
        parts.append(script.title())
    if territory:
        parts.append(territory.upper())
    return "_".join(parts)


def language_tag(locale: str) -> str:
    """The BCP 47 tag of a gettext locale name, for ``lang`` and ``Content-Language``."""
    return locale.replace("_", "-")


def text_direction(locale: str) -> str:
    """``"rtl"`` for a locale written right to left (``ar``, ``he``), else ``"ltr"``."""
    order = _babel_locale(locale).character_order
    return "rtl" if order == "right-to-left" else "ltr"


def catalog_dirs(extra: str | os.PathLike[str] | None = None) -> tuple[str, ...]:
    """The catalog directories to search, a host's ``extra`` one first."""
    dirs = [str(PACKAGED_CATALOGS)]
    if extra is not None:
        dirs.insert(0, os.fspath(extra))
    return tuple(dirs)


@functools.lru_cache(maxsize=64)
def available_languages(dirs: tuple[str, ...]) -> frozenset[str]:
    """The locales with a catalog in ``dirs``, English always among them."""
    found = {"en"}
    for directory in dirs:
        try:
            entries = list(Path(directory).iterdir())
        except OSError:
            continue
        for entry in entries:
            name = normalize_locale(entry.name)
            if name is not None and _catalog_file(entry / "LC_MESSAGES") is not None:
                found.add(name)
    return frozenset(found)


@functools.lru_cache(maxsize=1024)
def _negotiate(preferences: tuple[str | None, ...], available: frozenset[str]) -> str:
    for preference in preferences:
        locale = normalize_locale(preference)
        if locale is None:
            continue
        if locale in available:
            return locale
        language = locale.split("_", 1)[0]
        if language in available:
            return language
    return "en"


def negotiate(preferences: Iterable[str | None], available: Iterable[str]) -> str:
    """The first of ``preferences`` that ``available`` offers, else ``"en"``.

    Each preference is tried as given (``pt_BR``), then as its language alone
    (``pt``), before the next one.
    """
    return _negotiate(tuple(preferences), frozenset(available))


def translations(dirs: Sequence[str], locale: str) -> gettext.NullTranslations:
    """The texts for ``locale`` from ``dirs``: its own catalogs, then its language's.

    Messages a catalog lacks fall back to the next catalog, and finally to
    the English message ids. Loaded once per ``(dirs, locale)``.
    """
    return _translations(tuple(dirs), locale)


@functools.lru_cache(maxsize=64)
def _translations(dirs: tuple[str, ...], locale: str) -> gettext.NullTranslations:
    candidates = [locale]
    if "_" in locale:
        candidates.append(locale.split("_", 1)[0])
    chain: gettext.NullTranslations | None = None
    last: gettext.NullTranslations | None = None
    for candidate in candidates:
        for directory in dirs:
            path = _catalog_file(Path(directory) / candidate / "LC_MESSAGES")
            if path is None:
                continue
            loaded = _load(path)
            if last is None:
                chain = loaded
            else:
                last.add_fallback(loaded)
            last = loaded
    return chain if chain is not None else gettext.NullTranslations()


def _catalog_file(directory: Path) -> Path | None:
    """The catalog to read in ``directory``: the ``.mo``, unless its ``.po`` is newer."""
    mo, po = directory / f"{DOMAIN}.mo", directory / f"{DOMAIN}.po"
    try:
        mo_time: float | None = mo.stat().st_mtime
    except OSError:
        mo_time = None
    try:
        po_time: float | None = po.stat().st_mtime
    except OSError:
        po_time = None
    if mo_time is not None and (po_time is None or mo_time >= po_time):
        return mo
    return po if po_time is not None else None


def _load(path: Path) -> gettext.GNUTranslations:
    if path.suffix == ".mo":
        with path.open("rb") as stream:
            return gettext.GNUTranslations(stream)
    return gettext.GNUTranslations(io.BytesIO(compile_po(path)))


def compile_po(path: str | os.PathLike[str]) -> bytes:
    """The ``.mo`` image of the ``.po`` file at ``path``, skipping fuzzy entries."""
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    with open(path, "rb") as stream:
        catalog = read_po(stream, locale=Path(path).parent.parent.name)
    out = io.BytesIO()
    write_mo(out, catalog)
    return out.getvalue()


@functools.lru_cache(maxsize=64)
def _babel_locale(locale: str) -> Locale:
    try:
        return Locale.parse(locale)
    except (UnknownLocaleError, ValueError):
        try:
            return Locale.parse(locale.split("_", 1)[0])
        except (UnknownLocaleError, ValueError):
            return Locale.parse("en")


@functools.lru_cache(maxsize=64)
def _datetime_pattern(locale: str) -> str:
    data = _babel_locale(locale)
    date = babel.dates.get_date_format("long", locale=data).pattern
    time = babel.dates.get_time_format("short", locale=data).pattern
    joined = str(babel.dates.get_datetime_format("long", locale=data))
    return joined.replace("{1}", date).replace("{0}", f"{time} z")


def format_datetime(moment: datetime, locale: str) -> str:
    """``moment`` in UTC, long date and short time, as ``locale`` writes them.

    ``"January 15, 2027, 1:00 PM UTC"``, ``"15 de enero de 2027, 13:00 UTC"``.
    """
    pattern = _datetime_pattern(str(_babel_locale(locale)))
    # Every mail states its deadline: one shown to the minute is formatted once a minute.
    shown = moment.replace(microsecond=0)
    if "s" not in re.sub(r"'[^']*'", "", pattern):
        shown = shown.replace(second=0)
    return _format_moment(shown, pattern, locale)


@functools.lru_cache(maxsize=256)
def _format_moment(moment: datetime, pattern: str, locale: str) -> str:
    data = _babel_locale(locale)
    return str(babel.dates.format_datetime(moment, pattern, tzinfo=UTC, locale=data))


def format_timedelta(span: timedelta, locale: str) -> str:
    """``span`` in days, hours and minutes, as ``locale`` writes them.

    Rounded to the minute, at least one: ``"1 day, 2 hours, and 30 minutes"``,
    ``"1 día, 2 horas y 30 minutos"``.
    """
    return _format_minutes(max(1, round(span.total_seconds() / 60)), locale)


@functools.lru_cache(maxsize=256)
def _format_minutes(minutes: int, locale: str) -> str:
    data = _babel_locale(locale)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    parts = [
        babel.units.format_unit(count, unit, length="long", locale=data)
        for unit, count in (
            ("duration-day", days),
            ("duration-hour", hours),
            ("duration-minute", minutes),
        )
        if count
    ]
    return str(babel.lists.format_list(parts, locale=data))
