"""API-key authentication: who is calling, from the `Authorization: Bearer <key>` header.

Keys are known only by their SHA-256 digests; a presented key is hashed and compared against every digest
in constant time. The caller becomes a `Principal` named after the key's configured name, which is what
logs, rate limits and job ownership use; the key itself is never kept or logged. With auth disabled
(local use, explicitly configured) everyone is the `local` principal.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from replan_common.errors import Unauthorized
from replan_gateway.settings import ApiKey, hash_api_key


@dataclass(frozen=True)
class Principal:
    """The authenticated caller: `name` is the key's configured name, never the key."""

    name: str
    rate_limit: int | None = None


LOCAL = Principal(name="local")


class Authenticator:
    """Checks bearer keys against configured digests."""

    def __init__(self, keys: list[ApiKey], *, disabled: bool = False) -> None:
        self.disabled = disabled
        self._keys = list(keys)

    def authenticate(self, authorization: str | None) -> Principal:
        """The principal for an `Authorization` header value; raises `Unauthorized` (401)."""
        if self.disabled:
            return LOCAL
        if not authorization or not authorization.strip():
            raise Unauthorized("missing API key: send the header 'Authorization: Bearer <key>'", code="missing_api_key")
        scheme, _, key = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise Unauthorized(
                "malformed Authorization header: expected 'Bearer <key>'", code="invalid_authorization_header"
            )
        digest = hash_api_key(key.strip())
        match: ApiKey | None = None
        for candidate in self._keys:  # no early exit: the time taken does not depend on which key matched
            if hmac.compare_digest(candidate.sha256, digest):
                match = candidate
        if match is None:
            raise Unauthorized("invalid API key", code="invalid_api_key")
        return Principal(name=match.name, rate_limit=match.rate_limit)
