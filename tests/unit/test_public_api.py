"""The public surface: exports, the exception tree, reprs and the host protocols."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest

import credrecovery
from credrecovery import (
    Client,
    ClientDirectory,
    Confirmation,
    DeliveryFailed,
    DeliveryQueue,
    DirectoryError,
    InvalidCode,
    InvalidIdentifier,
    InvalidToken,
    KeyRejected,
    Mailer,
    Overloaded,
    RateLimited,
    RecoveryError,
    TokenAlreadyUsed,
    TokenExpired,
    UnknownClient,
)
from credrecovery.protocols import (
    AsyncClientDirectory,
    AsyncMailer,
    AsyncMustChangeDirectory,
    MustChangeDirectory,
)

PACKAGE_DIR = Path(credrecovery.__file__).parent
EXCEPTIONS = [
    DeliveryFailed,
    DirectoryError,
    InvalidCode,
    InvalidIdentifier,
    InvalidToken,
    KeyRejected,
    Overloaded,
    RateLimited,
    TokenAlreadyUsed,
    TokenExpired,
    UnknownClient,
]
PROTOCOLS = [
    ClientDirectory,
    Mailer,
    DeliveryQueue,
    AsyncClientDirectory,
    AsyncMailer,
    MustChangeDirectory,
    AsyncMustChangeDirectory,
]


@pytest.mark.parametrize("name", credrecovery.__all__)
def test_all_names_importable(name: str) -> None:
    """Every name in __all__ exists and is importable from the package."""
    module = importlib.import_module("credrecovery")
    assert getattr(module, name) is not None
    namespace: dict[str, object] = {}
    exec(f"from credrecovery import {name}", namespace)
    assert namespace[name] is getattr(credrecovery, name)


def test_all_has_no_duplicates() -> None:
    """__all__ lists each name once."""
    assert len(credrecovery.__all__) == len(set(credrecovery.__all__))


@pytest.mark.parametrize("exc", EXCEPTIONS)
def test_every_error_is_a_recovery_error(exc: type[Exception]) -> None:
    """Every library exception derives from RecoveryError."""
    assert issubclass(exc, RecoveryError)
    assert exc is not RecoveryError


def test_exception_tree_shape() -> None:
    """InvalidIdentifier is a ValueError; expired and used tokens are InvalidToken."""
    assert issubclass(InvalidIdentifier, ValueError)
    assert issubclass(TokenExpired, InvalidToken)
    assert issubclass(TokenAlreadyUsed, InvalidToken)
    assert not issubclass(TokenExpired, TokenAlreadyUsed)
    assert not issubclass(TokenAlreadyUsed, TokenExpired)
    assert not issubclass(InvalidToken, ValueError)
    assert issubclass(InvalidCode, InvalidToken)
    assert not issubclass(InvalidCode, TokenExpired | TokenAlreadyUsed)


def test_exported_exceptions_cover_the_module() -> None:
    """Every exception class in the exceptions module is exported and in the tree."""
    from credrecovery import exceptions

    defined = {
        obj
        for _, obj in inspect.getmembers(exceptions, inspect.isclass)
        if issubclass(obj, BaseException) and obj.__module__ == exceptions.__name__
    }
    assert defined == {*EXCEPTIONS, RecoveryError}
    for obj in defined:
        assert obj.__name__ in credrecovery.__all__


def _source_files() -> list[Path]:
    files = sorted(PACKAGE_DIR.rglob("*.py"))
    assert files
    return files


def test_recovery_error_never_raised_bare() -> None:
    """No source file raises RecoveryError itself, only its subclasses."""
    pattern = re.compile(r"raise\s+RecoveryError\b")
    offenders = [path.name for path in _source_files() if pattern.search(path.read_text("utf-8"))]
    assert offenders == []


def test_client_repr_hides_key_hash() -> None:
    """repr(Client) shows number and email but never the key hash."""
    key_hash = "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"
    client = Client("9000", "ejemplo@ejemploxmundo.com.ar", key_hash, name="Ana")
    text = repr(client) + str(client)
    assert key_hash not in text
    assert "argon2" not in text
    assert "key_hash" not in text
    assert "9000" in text


def test_confirmation_has_no_key_field() -> None:
    """Confirmation exposes only number and email."""
    assert list(inspect.signature(Confirmation).parameters) == ["number", "email"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_protocols_runtime_checkable(protocol: type) -> None:
    """The host protocols support isinstance checks."""
    assert getattr(protocol, "_is_runtime_protocol", False)
    assert not isinstance(object(), protocol)


def _protocol_methods(protocol: type) -> dict[str, object]:
    return {
        name: member
        for name, member in vars(protocol).items()
        if not name.startswith("_") and inspect.isfunction(member)
    }


def test_protocol_methods_are_the_documented_ones() -> None:
    """ClientDirectory has find and replace_key_hash; Mailer has send."""
    assert set(_protocol_methods(ClientDirectory)) == {"find", "replace_key_hash"}
    assert set(_protocol_methods(Mailer)) == {"send"}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_protocol_methods_documented(protocol: type) -> None:
    """The protocols and every one of their methods have a docstring."""
    assert inspect.getdoc(protocol)
    methods = _protocol_methods(protocol)
    assert methods
    for name, method in methods.items():
        doc = inspect.getdoc(method)
        assert doc and len(doc) > 20, name


@pytest.mark.parametrize(
    ("twin", "original"), [(AsyncClientDirectory, ClientDirectory), (AsyncMailer, Mailer)]
)
def test_async_protocols_carry_their_twins_contract(twin: type, original: type) -> None:
    """Each async protocol method has its sync twin's name and docstring."""
    assert _protocol_methods(twin).keys() == _protocol_methods(original).keys()
    for name, method in _protocol_methods(twin).items():
        assert inspect.iscoroutinefunction(method), name
        assert inspect.getdoc(method) == inspect.getdoc(getattr(original, name))
