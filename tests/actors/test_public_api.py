"""`actors` re-exports its public names and lists every one, sorted, in `__all__`."""

from __future__ import annotations

import ast
import importlib
import types
from pathlib import Path

import actors


def test_all_is_sorted_without_duplicates() -> None:
    assert actors.__all__ == sorted(actors.__all__)
    assert len(set(actors.__all__)) == len(actors.__all__)


def test_every_name_in_all_can_be_imported() -> None:
    module = importlib.import_module("actors")
    for name in actors.__all__:
        assert getattr(module, name) is not None, name


def test_every_public_name_of_the_package_is_listed_in_all() -> None:
    public = {
        name
        for name, value in vars(actors).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }

    assert public == set(actors.__all__)


def test_every_name_the_init_module_imports_is_listed_in_all() -> None:
    source = Path(actors.__file__).read_text()
    imported = {
        alias.asname or alias.name
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }

    assert imported == set(actors.__all__)


def test_the_package_ships_type_information() -> None:
    assert (Path(actors.__file__).parent / "py.typed").exists()
