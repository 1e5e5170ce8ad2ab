"""The argon2 adapter of identity's PasswordHasher port."""

from __future__ import annotations

import asyncio

import pytest

from adapters.auth.passwords import Argon2PasswordHasher, PasswordHashingBusy, usable_cores
from kernel.errors import Unavailable

pytestmark = pytest.mark.anyio

PASSWORD = "correct horse battery"


@pytest.fixture
def hasher() -> Argon2PasswordHasher:
    return Argon2PasswordHasher("low")


async def test_a_hash_verifies_its_password(hasher: Argon2PasswordHasher) -> None:
    hashed = await hasher.hash(PASSWORD)
    assert PASSWORD not in hashed
    assert await hasher.verify(hashed, PASSWORD) is True


async def test_a_wrong_password_does_not_verify(hasher: Argon2PasswordHasher) -> None:
    hashed = await hasher.hash(PASSWORD)
    assert await hasher.verify(hashed, PASSWORD + "!") is False
    assert await hasher.verify(hashed, PASSWORD.upper()) is False
    assert await hasher.verify(hashed, "") is False


@pytest.mark.parametrize(
    "malformed",
    [
        "",
        "not a hash",
        "$argon2id$",
        "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ",  # no digest
        "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$####",  # digest not base64
        "$argon2id$v=19$m=1,t=1,p=1$c2FsdHNhbHQ$4JkNmA",  # memory below the minimum
        "$argon2id$v=19$m=8,t=0,p=1$c2FsdHNhbHQ$4JkNmA",  # zero iterations
        "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$4JkNmAé",  # not ASCII
        "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",  # bcrypt
    ],
)
async def test_a_malformed_hash_is_a_mismatch_not_an_error(
    hasher: Argon2PasswordHasher, malformed: str
) -> None:
    assert await hasher.verify(malformed, PASSWORD) is False


async def test_hashes_are_salted(hasher: Argon2PasswordHasher) -> None:
    first, second = await hasher.hash(PASSWORD), await hasher.hash(PASSWORD)
    assert first != second
    assert await hasher.verify(first, PASSWORD)
    assert await hasher.verify(second, PASSWORD)


async def test_the_costs_are_encoded_in_the_hash() -> None:
    low = await Argon2PasswordHasher("low").hash(PASSWORD)
    default = await Argon2PasswordHasher().hash(PASSWORD)
    assert low.startswith("$argon2id$v=19$m=8,t=1,p=1$")
    assert default.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    # A hash carries its parameters: either hasher verifies the other's hashes.
    assert await Argon2PasswordHasher("low").verify(default, PASSWORD)
    assert await Argon2PasswordHasher().verify(low, PASSWORD)


def test_an_unknown_cost_is_refused() -> None:
    with pytest.raises(ValueError, match="cost"):
        Argon2PasswordHasher("medium")  # type: ignore[arg-type]


async def test_hashes_beyond_the_queue_are_refused_as_unavailable() -> None:
    # One hash at a time, one waiting: a third caller is told to come back, not queued.
    hasher = Argon2PasswordHasher("low", concurrency=1, queue=1, queue_wait=30)
    results = await asyncio.gather(
        *(hasher.hash(PASSWORD) for _ in range(3)), return_exceptions=True
    )
    assert [type(result) for result in results[:2]] == [str, str]
    assert isinstance(results[2], PasswordHashingBusy)
    # Busy is Unavailable: 503 with Retry-After at the edge, over every transport.
    assert isinstance(results[2], Unavailable)
    # The slots are free again afterwards.
    assert await hasher.verify(str(results[0]), PASSWORD)


async def test_a_hash_that_waits_too_long_for_its_turn_is_refused() -> None:
    hasher = Argon2PasswordHasher(concurrency=1, queue=5, queue_wait=0.001)
    first, second = await asyncio.gather(
        hasher.hash(PASSWORD), hasher.hash(PASSWORD), return_exceptions=True
    )
    assert isinstance(first, str)
    assert isinstance(second, PasswordHashingBusy)


def test_by_default_only_what_the_cores_carry_runs_at_once() -> None:
    # A default-cost hash keeps four threads busy; the cheap one, one.
    assert Argon2PasswordHasher().concurrency == max(1, usable_cores() // 4)
    assert Argon2PasswordHasher("low").concurrency == usable_cores()
