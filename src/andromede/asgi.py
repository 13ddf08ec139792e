"""ASGI's types, once, for the plain ASGI code (the S3 face, the admin recorder, the root app).

A scope or message is a mapping of str to values the server chose; the readers below check
the type of the field they take, so code past them is typed and a server that sends something
unexpected fails here, loudly, instead of deep inside a handler.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping, Sequence

Scope = MutableMapping[str, object]
Message = MutableMapping[str, object]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


def text(fields: Mapping[str, object], name: str, default: str = "") -> str:
    """A str field (``type``, ``method``, ``path``, ``root_path``)."""
    value = fields.get(name, default)
    if not isinstance(value, str):
        raise TypeError(f"ASGI field {name!r} is not a str: {value!r}")
    return value


def raw(fields: Mapping[str, object], name: str, default: bytes = b"") -> bytes:
    """A bytes field (``raw_path``, ``query_string``, ``body``); None reads as ``default``."""
    value = fields.get(name)
    if value is None:
        return default
    if not isinstance(value, bytes | bytearray):
        raise TypeError(f"ASGI field {name!r} is not bytes: {value!r}")
    return bytes(value)


def integer(fields: Mapping[str, object], name: str) -> int:
    """An int field (a response's ``status``)."""
    value = fields.get(name)
    if not isinstance(value, int):
        raise TypeError(f"ASGI field {name!r} is not an int: {value!r}")
    return value


def headers(fields: Mapping[str, object]) -> list[tuple[bytes, bytes]]:
    """A scope's or a response start's ``headers``: (name, value) byte pairs, as sent."""
    found = fields.get("headers", ())
    if not isinstance(found, Iterable):
        raise TypeError(f"ASGI headers are not a list: {found!r}")
    out = []
    for name, value in found:  # servers send tuples or two-item lists
        if not isinstance(name, bytes | bytearray) or not isinstance(value, bytes | bytearray):
            raise TypeError(f"an ASGI header is not a pair of bytes: {(name, value)!r}")
        out.append((bytes(name), bytes(value)))
    return out


def client(scope: Mapping[str, object]) -> tuple[str, int] | None:
    """The peer's (host, port), when the server knows it."""
    found = scope.get("client")
    if found is None:
        return None
    if not isinstance(found, Sequence) or len(found) != 2:
        raise TypeError(f"ASGI client is not a (host, port) pair: {found!r}")
    host, port = found
    return str(host), int(port)
