"""What every handler receives."""

from __future__ import annotations

from dataclasses import dataclass

from andromede.auth.sigv4 import AuthContext
from andromede.core import errors
from andromede.core.models import Principal
from andromede.s3.http import Request
from andromede.services.container import Services


@dataclass(frozen=True)
class Context:
    """The request, who sent it, how it was signed, and the services."""

    req: Request
    principal: Principal
    auth: AuthContext
    services: Services
    region: str

    @property
    def bucket(self) -> str:
        """The bucket named by the request (routing guarantees there is one)."""
        if self.req.bucket is None:
            raise errors.InvalidRequest("A bucket is required.")
        return self.req.bucket

    @property
    def key(self) -> str:
        """The key named by the request (routing guarantees there is one)."""
        if self.req.key is None:
            raise errors.InvalidRequest("A key is required.")
        return self.req.key

    def int_query(self, name: str, default: int, lo: int = 0, hi: int = 2**31 - 1) -> int:
        """An integer query parameter within bounds, else InvalidArgument."""
        raw = self.req.query.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise errors.InvalidArgument(
                f"Provided {name} not an integer or within integer range",
                ArgumentName=name,
                ArgumentValue=raw[:64],
            ) from None
        if not lo <= value <= hi:
            raise errors.InvalidArgument(
                f"Argument {name} must be an integer between {lo} and {hi}",
                ArgumentName=name,
                ArgumentValue=raw[:64],
            )
        return value
