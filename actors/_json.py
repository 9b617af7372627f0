"""Compact JSON, encoded by one C encoder built once and called directly.

`json.JSONEncoder.encode` builds a new C encoder (and its cycle-check dict)
on every call: for a small event's `data` that set-up costs as much as the
encoding itself. `Encoder` builds it once. What it writes is exactly what
`json.JSONEncoder(separators=(",", ":"), ...).encode` writes.
"""

from __future__ import annotations

import json
import json.encoder
import logging
import math
from collections.abc import Callable
from json.encoder import encode_basestring_ascii
from typing import Any

log = logging.getLogger("greenroom")

#: None on an interpreter without the C accelerator (as `json` itself has it).
_make_c_encoder: Callable[..., Any] | None = getattr(json.encoder, "c_make_encoder", None)

#: What a new `Encoder` checks its accelerator on: every kind of value `json`
#: writes, a key that is not a string, a value only `default` can give a
#: form to, and floats that are not finite (refused with `allow_nan=False`).
_PROBES: tuple[Any, ...] = (
    {"s": "é\n", 1: -1, "f": 2.5, "l": [None, True, False], "t": (1,), "d": {}, "x": {1}},
    [math.nan],
    [-math.inf],
)


def _writes(encode: Callable[[Any], str], value: Any) -> str | type[BaseException]:
    try:
        return encode(value)
    except Exception as error:
        return type(error)


class Encoder:
    """`encode(value)`: `value` as compact ASCII JSON. `default` is called
    for what JSON has no form for; with `allow_nan=False`, a float that is
    not finite raises `ValueError` (as a cycle does), not `NaN`."""

    __slots__ = ("_c", "_markers", "_slow")

    def __init__(self, default: Callable[[Any], Any], *, allow_nan: bool = True) -> None:
        self._slow = json.JSONEncoder(separators=(",", ":"), default=default, allow_nan=allow_nan)
        #: The cycle check's ids: empty between calls (cleared after an error).
        self._markers: dict[int, Any] = {}
        self._c = None
        if _make_c_encoder is not None:
            # The accelerator is private to `json`: should a later Python
            # change it, it is used only if it still writes what `json`
            # writes, and refuses what `json` refuses.
            try:
                c = _make_c_encoder(
                    self._markers, default, encode_basestring_ascii, None, ":", ",", False,
                    False, allow_nan,
                )  # fmt: skip
                if all(self._agrees(c, value) for value in _PROBES):
                    self._c = c
            except Exception:
                pass
            if self._c is None:
                log.warning("json's C encoder is not what it was: encoding the slower way")

    def _agrees(self, c: Any, value: Any) -> bool:
        try:
            return _writes(lambda v: "".join(c(v, 0)), value) == _writes(self._slow.encode, value)
        finally:
            self._markers.clear()

    def encode(self, value: Any) -> str:
        c, markers = self._c, self._markers
        if c is None or markers:  # no accelerator, or called again from `default`
            return self._slow.encode(value)
        try:
            return "".join(c(value, 0))
        except BaseException:
            markers.clear()  # what the failed call left behind
            raise
