"""UserContext: frozen, validated where it is built, run id generated."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import attrs
import pytest

from actors import InvalidRequest, UserContext


def test_a_context_keeps_the_ids_and_metadata_it_was_given() -> None:
    ctx = UserContext(user_id="alice", run_id="run-1", metadata={"lang": "en", "n": 3})

    assert ctx.user_id == "alice"
    assert ctx.run_id == "run-1"
    assert dict(ctx.metadata) == {"lang": "en", "n": 3}


def test_a_context_is_frozen() -> None:
    ctx = UserContext(user_id="alice")

    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        ctx.user_id = "mallory"  # type: ignore[misc]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        ctx.run_id = "other"  # type: ignore[misc]
    assert ctx.user_id == "alice"


def test_metadata_is_a_read_only_copy_of_what_was_given() -> None:
    given = {"lang": "en"}
    ctx = UserContext(user_id="alice", metadata=given)

    given["lang"] = "fr"
    with pytest.raises(TypeError):
        ctx.metadata["lang"] = "de"  # type: ignore[index]

    assert isinstance(ctx.metadata, MappingProxyType)
    assert ctx.metadata["lang"] == "en"


def test_metadata_defaults_to_an_empty_mapping() -> None:
    assert dict(UserContext(user_id="alice").metadata) == {}


def test_contexts_without_metadata_share_one_read_only_empty_mapping() -> None:
    first, second = UserContext(user_id="alice"), UserContext(user_id="bob", metadata={})

    assert first.metadata is second.metadata  # not a dict and a proxy for every run
    with pytest.raises(TypeError):
        first.metadata["lang"] = "en"  # type: ignore[index]
    assert dict(second.metadata) == {}


def test_a_run_id_is_generated_when_none_is_given() -> None:
    first = UserContext(user_id="alice")
    second = UserContext(user_id="alice", run_id=None)

    assert first.run_id and second.run_id
    assert first.run_id != second.run_id
    assert len(first.run_id) == 32 and all(c in "0123456789abcdef" for c in first.run_id)


def test_the_context_takes_keyword_arguments_only() -> None:
    with pytest.raises(TypeError):
        UserContext("alice")  # type: ignore[misc]


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("", "must not be empty"),
        ("a" * 129, "at most 128 characters"),
        ("has space", "printable characters without spaces"),
        ("tab\there", "printable characters without spaces"),
        ("bell\x07", "printable characters without spaces"),
        (42, "must be a string"),
    ],
)
@pytest.mark.parametrize("field", ["user_id", "run_id"])
def test_a_bad_id_is_refused_naming_the_field_and_what_is_accepted(
    field: str, value: Any, accepted: str
) -> None:
    fields: dict[str, Any] = {"user_id": "alice", "run_id": "run-1"}
    fields[field] = value

    with pytest.raises(InvalidRequest) as caught:
        UserContext(**fields)

    assert isinstance(caught.value, ValueError)
    assert str(caught.value).startswith(field)
    assert accepted in str(caught.value)


def test_a_missing_user_id_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="user_id must be a string, got NoneType"):
        UserContext(user_id=None)  # type: ignore[arg-type]


def test_an_id_of_exactly_the_maximum_length_is_accepted() -> None:
    assert UserContext(user_id="u" * 128, run_id="r" * 128).user_id == "u" * 128


@pytest.mark.parametrize(
    ("metadata", "accepted"),
    [
        (["not", "a", "mapping"], "metadata must be a mapping"),
        ({f"k{i}": i for i in range(33)}, "at most 32 items"),
        ({"": 1}, "keys must be non-empty strings"),
        ({1: 1}, "keys must be non-empty strings"),
        ({"k" * 129: 1}, "keys must be non-empty strings"),
        ({"nested": {"a": 1}}, "must be a string, number, boolean or null"),
        ({"listed": [1, 2]}, "must be a string, number, boolean or null"),
        ({"long": "x" * 1025}, "at most 1024 characters"),
    ],
)
def test_bad_metadata_is_refused_naming_the_field_and_what_is_accepted(
    metadata: Any, accepted: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        UserContext(user_id="alice", metadata=metadata)

    assert str(caught.value).startswith("metadata")
    assert accepted in str(caught.value)


def test_metadata_of_scalars_up_to_the_limits_is_accepted() -> None:
    metadata: dict[str, Any] = {f"k{i}": i for i in range(28)}
    metadata.update({"s": "x" * 1024, "f": 1.5, "b": True, "none": None})

    assert dict(UserContext(user_id="alice", metadata=metadata).metadata) == metadata
