"""Compact JSON, encoded by one C encoder built once and called directly.

`json.JSONEncoder.encode` builds a new C encoder (and its cycle-check dict)
on every call: for a small event's `data` that set-up costs as much as the
encoding itself. `Encoder` builds it once. What it writes is exactly what
`json.JSONEncoder(separators=(",", ":"), ...).encode` writes.
"""

from __future__ import annotations

import json
import json.encoder
from collections.abc import Callable
from json.encoder import encode_basestring_ascii
from typing import Any

#: None on an interpreter without the C accelerator (as `json` itself has it).
_make_c_encoder: Callable[..., Any] | None = getattr(json.encoder, "c_make_encoder", None)


#: What a new `Encoder` checks its accelerator on: every kind of value `json` writes.
_PROBE: Any = {"s": "é\n", "i": -1, "f": 2.5, "l": [None, True, False], "t": (1,), "d": {}}


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
            try:
                c = _make_c_encoder(
                    self._markers, default, encode_basestring_ascii, None, ":", ",", False,
                    False, allow_nan,
                )  # fmt: skip
                # The accelerator is private to `json`: should its signature
                # change, what it writes must still be what `json` writes.
                if "".join(c(_PROBE, 0)) == self._slow.encode(_PROBE):
                    self._c = c
            except Exception:
                pass  # the standard encoder's own way, slower
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
