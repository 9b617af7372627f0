"""The client's requests: parsed and checked here, without I/O.

A bad request raises `ProtocolError` with a stable `code` and a `detail`
naming the problem; the connection stays open.
"""

from __future__ import annotations

import json
import math
from typing import Any

import attrs

from ._context import check_id
from ._errors import InvalidRequest


class ProtocolError(InvalidRequest):
    """A request the server cannot act on; `code` is sent to the client."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail

    def to_json(self) -> str:
        return error_json(self.code, self.detail)


def error_json(code: str, detail: str) -> str:
    return json.dumps({"type": "error", "code": code, "detail": detail})


PONG = json.dumps({"type": "pong"})


@attrs.frozen
class RunRequest:
    agent: str
    input: Any
    run_id: str | None


@attrs.frozen
class CancelRequest:
    run_id: str


@attrs.frozen
class ResumeRequest:
    after: int


@attrs.frozen
class PingRequest:
    pass


Request = RunRequest | CancelRequest | ResumeRequest | PingRequest
REQUEST_TYPES = ("run", "cancel", "resume", "ping")


def _field(message: dict[str, Any], name: str, kind: type | tuple[type, ...], what: str) -> Any:
    if name not in message:
        raise ProtocolError(
            "missing_field", f"{message['type']!r} needs the field {name!r} ({what})"
        )
    value = message[name]
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ProtocolError("invalid_field", f"{name!r} must be {what}, got {type(value).__name__}")
    return value


def _id(message: dict[str, Any], name: str) -> str:
    value = _field(message, name, str, "a string")
    try:
        return check_id(name, value)
    except InvalidRequest as error:
        raise ProtocolError("invalid_field", str(error)) from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


#: Past this, a number has no double: JSON readers such as JavaScript's
#: make it Infinity.
_DOUBLE_MAX = 2**1024


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text} is beyond what a double holds")
    return value


def _whole(text: str) -> int:
    value = int(text)
    if abs(value) >= _DOUBLE_MAX:
        raise ValueError(f"a number of {len(text)} digits is beyond what a double holds")
    return value


def parse_request(text: str) -> Request:
    """Turn one text frame into a request, or raise `ProtocolError`.

    Strict JSON: no `NaN` or `Infinity`, and no number too large for a
    double (`1e999`), so nothing non-finite reaches an agent or an event.
    """
    try:
        message = json.loads(
            text, parse_constant=_no_constant, parse_float=_finite, parse_int=_whole
        )
    except RecursionError:
        raise ProtocolError(
            "invalid_json", "the frame nests arrays or objects deeper than a request may"
        ) from None
    except ValueError as error:
        raise ProtocolError("invalid_json", f"the frame is not valid JSON: {error}") from None
    if not isinstance(message, dict):
        raise ProtocolError("not_an_object", "a request must be a JSON object")
    kind = message.get("type")
    if kind not in REQUEST_TYPES:
        raise ProtocolError(
            "unknown_type", f"type must be one of {', '.join(REQUEST_TYPES)}; got {kind!r}"
        )
    match kind:
        case "run":
            agent = _field(message, "agent", str, "an agent name")
            run_id = _id(message, "run_id") if message.get("run_id") is not None else None
            return RunRequest(agent, message.get("input"), run_id)
        case "cancel":
            return CancelRequest(_id(message, "run_id"))
        case "resume":
            after = _field(message, "after", int, "a whole number >= 0 (the last seq seen)")
            if after < 0:
                raise ProtocolError("invalid_field", f"'after' must be >= 0, got {after}")
            return ResumeRequest(after)
        case _:
            return PingRequest()
