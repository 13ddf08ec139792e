"""S3 handlers: translate one operation's HTTP shape to a service call and back."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from andromede.s3.handlers import (
    buckets,
    config,
    encryption,
    lifecycle,
    locks,
    multipart,
    objects,
    tagging,
    versioning,
)
from andromede.s3.handlers.context import Context
from andromede.s3.http import Response
from andromede.s3.router import Endpoint

Handler = Callable[[Context], Awaitable[Response]]

HANDLERS: dict[Endpoint, Handler] = {
    **buckets.HANDLERS,
    **config.HANDLERS,
    **encryption.HANDLERS,
    **tagging.HANDLERS,
    **objects.HANDLERS,
    **multipart.HANDLERS,
    **versioning.HANDLERS,
    **locks.HANDLERS,
    **lifecycle.HANDLERS,
}

__all__ = ["HANDLERS", "Context", "Handler"]
