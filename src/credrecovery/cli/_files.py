"""The directories the commands open: SQLite files, created private and checked before
use, or any database SQLAlchemy reaches by URL."""

from __future__ import annotations

import argparse
import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from ..adapters.sqlite import SQLiteDirectory
from ._common import DATABASE_PASSWORD_ENV, PROG, CommandFailed, crypt_context

_SQLITE_HEADER = b"SQLite format 3\x00"


@contextlib.contextmanager
def open_directory(
    path: Path, *, timeout: float, create: Literal["never", "if-missing", "new"] = "never"
) -> Iterator[SQLiteDirectory]:
    """Open the SQLite directory at ``path``, creating the file only as ``create`` allows.

    A file created here is mode 0600, as are its ``-wal`` and ``-shm``; should
    the command then fail, the new file is removed again. ``timeout`` is how
    many seconds each call waits for a lock another connection holds.
    """
    created = False
    if create != "never":
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            if create == "new" and not path.is_dir():
                raise CommandFailed(f"{path} already exists") from None
        else:
            os.close(fd)
            created = True
    if not created:
        _check_existing(path)
    try:
        with _private_umask():
            directory = SQLiteDirectory(path, crypt_context=crypt_context(), timeout=timeout)
    except BaseException:
        if created:
            _remove(path)
        raise
    try:
        with directory:
            yield directory
    except BaseException:
        if created:
            _remove(path)
        raise


@contextlib.contextmanager
def open_named(args: argparse.Namespace) -> Iterator[Any]:
    """The directory ``--database-url`` or ``--db`` names, open for the command's length."""
    if getattr(args, "database_url", None) is not None:
        with open_database(args.database_url) as directory:
            yield directory
    else:
        with open_directory(args.db, timeout=args.lock_timeout) as directory:
            yield directory


@contextlib.contextmanager
def open_database(url: str) -> Iterator[Any]:
    """A :class:`~credrecovery.sqlalchemy.SQLAlchemyDirectory` on its own tables at ``url``.

    The URL may not hold a password, which other users of the machine could
    read on the command line; it comes from the environment instead.
    """
    try:
        import sqlalchemy as sa

        from ..adapters.sqlalchemy import SQLAlchemyDirectory
    except ImportError:
        raise CommandFailed(
            "--database-url needs SQLAlchemy: pip install 'credrecovery[sqlalchemy]'"
        ) from None
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        raise CommandFailed(
            "--database-url is not a database URL, such as "
            "postgresql+psycopg://panel@db.internal/panel"
        ) from None
    if parsed.password is not None:
        raise CommandFailed(
            f"--database-url must not hold a password, which other users of "
            f"this machine could read: put it in ${DATABASE_PASSWORD_ENV}"
        )
    password = os.environ.get(DATABASE_PASSWORD_ENV)
    if password:
        parsed = parsed.set(password=password)
    try:
        directory = SQLAlchemyDirectory(parsed, crypt_context=crypt_context())
    except (ImportError, sa.exc.NoSuchModuleError) as exc:
        raise CommandFailed(
            f"--database-url names a database driver that is not installed ({type(exc).__name__})"
        ) from None
    with directory:
        yield directory


def _check_existing(path: Path) -> None:
    """Refuse, before SQLite sees it, a path that is missing or not a SQLite file."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise CommandFailed(
            f"{path} does not exist (create it with: {PROG} init --db {path})"
        ) from None
    if stat.S_ISDIR(mode):
        raise CommandFailed(f"{path} is a directory, not a SQLite file")
    if not stat.S_ISREG(mode):
        raise CommandFailed(f"{path} is not a regular file")
    with open(path, "rb") as file:
        header = file.read(len(_SQLITE_HEADER))
    # An empty file is an empty SQLite database.
    if header and header != _SQLITE_HEADER:
        raise CommandFailed(f"{path} is not a SQLite database")


@contextlib.contextmanager
def _private_umask() -> Iterator[None]:
    # SQLite creates -wal and -shm on first open; nobody else may read them.
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


def _remove(path: Path) -> None:
    for name in (os.fspath(path), f"{os.fspath(path)}-wal", f"{os.fspath(path)}-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)
