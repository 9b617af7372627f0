"""Signed, expiring tokens that name a user (stdlib hmac; greenroom mints and verifies)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import time

import attrs

from ._context import check_id
from ._errors import InvalidRequest

#: Used by `--dev` only; never accepted without it being said out loud.
DEV_SECRET = "greenroom-development-secret-not-for-production"
MIN_SECRET_BYTES = 16
MAX_TOKEN_CHARS = 2048
_VERSION = "v1"


class InvalidToken(InvalidRequest):
    """A token is missing, malformed, forged or expired (the message says which)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _secret_bytes(value: str | bytes) -> bytes:
    secret = value.encode() if isinstance(value, str) else value
    if len(secret) < MIN_SECRET_BYTES:
        raise InvalidRequest(f"the signing secret must be at least {MIN_SECRET_BYTES} bytes long")
    return secret


@attrs.frozen
class TokenSigner:
    """Mints and verifies `v1.<payload>.<signature>` tokens (HMAC-SHA256)."""

    secret: bytes = attrs.field(converter=_secret_bytes, repr=False)

    def mint(self, user_id: str, *, ttl: float = 3600.0, now: float | None = None) -> str:
        """A token for `user_id` valid for `ttl` seconds."""
        check_id("user_id", user_id)
        try:
            seconds = float(ttl)  # a whole number too large for a float is not finite
        except (TypeError, ValueError, OverflowError):
            seconds = math.nan
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < seconds < math.inf:
            raise InvalidRequest(f"ttl must be a finite number of seconds > 0, got {ttl!r}")
        # Rounded up: a token is never expired before `ttl` has passed.
        expires = math.ceil((time.time() if now is None else now) + seconds)
        payload = _b64(json.dumps({"sub": user_id, "exp": expires}, separators=(",", ":")).encode())
        return f"{_VERSION}.{payload}.{self._sign(payload)}"

    def verify(self, token: str | None, *, now: float | None = None) -> str:
        """The user a valid token names; raises `InvalidToken` saying why not."""
        if not token:
            raise InvalidToken("no token: pass ?token=... or the subprotocol bearer.<token>")
        if len(token) > MAX_TOKEN_CHARS:
            raise InvalidToken("malformed token: too long")
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != _VERSION:
            raise InvalidToken("malformed token: expected v1.<payload>.<signature>")
        _, payload, signature = parts
        if not hmac.compare_digest(signature.encode(), self._sign(payload).encode()):
            raise InvalidToken("forged token: the signature does not match")
        try:
            claims = json.loads(_unb64(payload))
            user_id, expires = claims["sub"], claims["exp"]
        except (ValueError, KeyError, TypeError):
            raise InvalidToken("malformed token: unreadable payload") from None
        if isinstance(expires, bool) or not isinstance(expires, int):
            raise InvalidToken("malformed token: bad expiry")
        if expires <= (time.time() if now is None else now):
            raise InvalidToken("expired token: mint a new one")
        try:
            return check_id("user_id", user_id)
        except InvalidRequest:
            raise InvalidToken("malformed token: bad user id") from None

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self.secret, payload.encode(), hashlib.sha256).digest())
