"""TokenSigner: signed, expiring tokens that name a user (no sockets)."""

from __future__ import annotations

import base64
import json
import time

import pytest

from actors import InvalidRequest, InvalidToken, TokenSigner

SECRET = "unit-test-secret-0123456789abcdef"
NOW = 1_700_000_000.0


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_a_minted_token_verifies_to_the_user_it_names() -> None:
    signer = TokenSigner(SECRET)

    token = signer.mint("alice")

    assert signer.verify(token) == "alice"


def test_tokens_for_different_users_differ_and_name_their_own_user() -> None:
    signer = TokenSigner(SECRET)

    alice, bob = signer.mint("alice", now=NOW), signer.mint("bob", now=NOW)

    assert alice != bob
    assert signer.verify(alice, now=NOW) == "alice"
    assert signer.verify(bob, now=NOW) == "bob"


def test_a_token_is_valid_until_its_ttl_has_passed_and_expired_after() -> None:
    signer = TokenSigner(SECRET)
    token = signer.mint("alice", ttl=60, now=NOW)

    assert signer.verify(token, now=NOW + 59) == "alice"
    with pytest.raises(InvalidToken, match="expired"):
        signer.verify(token, now=NOW + 60)
    with pytest.raises(InvalidToken, match="expired"):
        signer.verify(token, now=NOW + 3600)


@pytest.mark.parametrize("fraction", [0.0, 0.3, 0.7, 0.99])
def test_a_token_with_a_ttl_under_a_second_is_valid_when_minted(fraction: float) -> None:
    signer = TokenSigner(SECRET)
    minted_at = NOW + fraction

    token = signer.mint("alice", ttl=0.2, now=minted_at)

    assert signer.verify(token, now=minted_at) == "alice"
    with pytest.raises(InvalidToken, match="expired"):
        signer.verify(token, now=minted_at + 1.2)


def test_a_token_minted_in_the_past_is_expired_now() -> None:
    signer = TokenSigner(SECRET)

    token = signer.mint("alice", ttl=10, now=time.time() - 3600)

    with pytest.raises(InvalidToken, match="expired"):
        signer.verify(token)


def test_a_token_signed_with_another_secret_is_forged() -> None:
    mine = TokenSigner(SECRET)
    theirs = TokenSigner("another-secret-of-enough-length")

    with pytest.raises(InvalidToken, match="forged"):
        mine.verify(theirs.mint("alice"))


def test_a_token_whose_payload_was_changed_is_forged() -> None:
    signer = TokenSigner(SECRET)
    version, _, signature = signer.mint("alice", now=NOW).split(".")
    payload = _b64(json.dumps({"sub": "mallory", "exp": int(NOW) + 3600}).encode())

    with pytest.raises(InvalidToken, match="forged"):
        signer.verify(f"{version}.{payload}.{signature}", now=NOW)


def test_a_signature_differing_in_its_last_character_is_forged() -> None:
    signer = TokenSigner(SECRET)
    token = signer.mint("alice", now=NOW)
    tampered = token[:-1] + ("A" if token[-1] != "A" else "B")

    with pytest.raises(InvalidToken, match="forged"):
        signer.verify(tampered, now=NOW)


@pytest.mark.parametrize("token", [None, ""])
def test_no_token_is_refused_saying_how_to_pass_one(token: str | None) -> None:
    with pytest.raises(InvalidToken, match="no token") as error:
        TokenSigner(SECRET).verify(token)
    assert "bearer." in str(error.value)


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "v1.only-two",
        "v1.a.b.c",
        "v2.payload.signature",
        ".....",
    ],
)
def test_a_token_without_the_v1_payload_signature_shape_is_malformed(token: str) -> None:
    with pytest.raises(InvalidToken, match="malformed"):
        TokenSigner(SECRET).verify(token)


def test_a_token_over_the_length_limit_is_malformed_before_any_checking() -> None:
    signer = TokenSigner(SECRET)

    with pytest.raises(InvalidToken, match="too long"):
        signer.verify("v1." + "a" * 5000 + ".sig")


@pytest.mark.parametrize(
    "claims",
    [
        {"sub": "alice"},
        {"exp": int(NOW) + 60},
        {"sub": "alice", "exp": "tomorrow"},
        {"sub": "alice", "exp": True},
        {"sub": "", "exp": int(NOW) + 60},
        {"sub": "two words", "exp": int(NOW) + 60},
        ["alice", int(NOW) + 60],
    ],
)
def test_a_correctly_signed_token_with_unusable_claims_is_malformed(claims: object) -> None:
    signer = TokenSigner(SECRET)
    payload = _b64(json.dumps(claims).encode())
    token = f"v1.{payload}.{signer._sign(payload)}"

    with pytest.raises(InvalidToken, match="malformed"):
        signer.verify(token, now=NOW)


def test_a_correctly_signed_payload_that_is_not_json_is_malformed() -> None:
    signer = TokenSigner(SECRET)
    payload = _b64(b"\xff not json")
    token = f"v1.{payload}.{signer._sign(payload)}"

    with pytest.raises(InvalidToken, match="malformed"):
        signer.verify(token, now=NOW)


def test_invalid_token_is_an_invalid_request() -> None:
    with pytest.raises(InvalidRequest):
        TokenSigner(SECRET).verify("garbage")


@pytest.mark.parametrize("ttl", [0, -1, True, "60"])
def test_minting_with_a_ttl_that_is_not_a_positive_number_is_refused(ttl: object) -> None:
    with pytest.raises(InvalidRequest, match="ttl"):
        TokenSigner(SECRET).mint("alice", ttl=ttl)  # type: ignore[arg-type]


@pytest.mark.parametrize("user_id", ["", "two words", "x" * 1000])
def test_minting_for_an_unacceptable_user_id_is_refused(user_id: str) -> None:
    with pytest.raises(InvalidRequest, match="user_id"):
        TokenSigner(SECRET).mint(user_id)


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="at least 16 bytes"):
        TokenSigner("short")


def test_a_signer_accepts_its_secret_as_bytes_and_never_shows_it() -> None:
    signer = TokenSigner(SECRET.encode())

    assert TokenSigner(SECRET).verify(signer.mint("alice")) == "alice"
    assert SECRET not in repr(signer)


@pytest.mark.parametrize("ttl", [0, -1, float("nan"), float("inf"), 10**400, True, "60"])
def test_a_ttl_that_is_not_a_finite_positive_number_is_refused(ttl: object) -> None:
    with pytest.raises(InvalidRequest, match="ttl must be a finite number of seconds > 0"):
        TokenSigner(SECRET).mint("alice", ttl=ttl)  # type: ignore[arg-type]
