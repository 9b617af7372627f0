"""Who a run is for: the user's context, validated once where it is built."""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import attrs

from ._errors import InvalidRequest

MAX_ID_LENGTH = 128
MAX_METADATA_ITEMS = 32
MAX_METADATA_VALUE = 1024
_SCALARS = (str, int, float, bool, type(None))


def check_id(field: str, value: object) -> str:
    """Return `value` if it is an acceptable id, else raise `InvalidRequest`."""
    if not isinstance(value, str):
        raise InvalidRequest(f"{field} must be a string, got {type(value).__name__}")
    if not value:
        raise InvalidRequest(f"{field} must not be empty")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidRequest(
            f"{field} must be at most {MAX_ID_LENGTH} characters, got {len(value)}"
        )
    # Of the white space, only " " is printable.
    if not value.isprintable() or " " in value:
        raise InvalidRequest(f"{field} must be printable characters without spaces, got {value!r}")
    return value


def new_run_id() -> str:
    """128 random bits as 32 lowercase hex digits, the shape of a uuid4's
    hex at a fifth of its cost (no UUID object is built)."""
    return os.urandom(16).hex()


def _run_id(value: str | None) -> str:
    return new_run_id() if value is None else value


def _validate_id(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    check_id(attribute.name, value)


#: What a context without metadata holds: one read-only empty mapping for
#: all of them, not a dict and a proxy for every run.
_NO_METADATA: Mapping[str, Any] = MappingProxyType({})


def _frozen_metadata(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    if value is None:
        return _NO_METADATA
    if not isinstance(value, Mapping):
        raise InvalidRequest(f"metadata must be a mapping, got {type(value).__name__}")
    if len(value) > MAX_METADATA_ITEMS:
        raise InvalidRequest(
            f"metadata may hold at most {MAX_METADATA_ITEMS} items, got {len(value)}"
        )
    for key, item in value.items():
        if not isinstance(key, str) or not key or len(key) > MAX_ID_LENGTH:
            raise InvalidRequest(f"metadata keys must be non-empty strings, got {key!r}")
        if not isinstance(item, _SCALARS):
            raise InvalidRequest(
                f"metadata[{key!r}] must be a string, number, boolean or null, "
                f"got {type(item).__name__}"
            )
        if isinstance(item, str) and len(item) > MAX_METADATA_VALUE:
            raise InvalidRequest(
                f"metadata[{key!r}] must be at most {MAX_METADATA_VALUE} characters"
            )
    return MappingProxyType(dict(value)) if value else _NO_METADATA


@attrs.frozen(kw_only=True)
class UserContext:
    """A user and one of their runs. Immutable; invalid values never get built.

    `user_id` and `run_id`: non-empty, at most 128 printable characters, no
    spaces. `run_id` is generated when not given. `metadata`: up to 32
    string keys with scalar values, read-only.
    """

    user_id: str = attrs.field(validator=_validate_id)
    run_id: str = attrs.field(default=None, converter=_run_id, validator=_validate_id)
    metadata: Mapping[str, Any] = attrs.field(
        default=None, converter=_frozen_metadata, eq=False, hash=False
    )
