"""runtime's one face: `__all__` is sorted and complete, and every name in it imports."""

from __future__ import annotations

import importlib
from types import ModuleType

import runtime


def test_dunder_all_is_sorted() -> None:
    assert runtime.__all__ == sorted(runtime.__all__)


def test_dunder_all_has_no_duplicates() -> None:
    assert len(set(runtime.__all__)) == len(runtime.__all__)


def test_every_name_in_dunder_all_can_be_imported() -> None:
    module = importlib.import_module("runtime")
    for name in runtime.__all__:
        namespace: dict[str, object] = {}
        exec(f"from runtime import {name}", namespace)
        assert namespace[name] is getattr(module, name)


def test_every_public_name_of_the_package_is_in_dunder_all() -> None:
    public = {
        name
        for name, value in vars(runtime).items()
        if not name.startswith("_") and not isinstance(value, ModuleType)
    }

    assert public == set(runtime.__all__)
