"""Service signatures: only an unchanged, fresh, first-seen request of the deployment passes."""

from __future__ import annotations

import pytest

from adapters.bus.http.signing import SignatureRefused, Signer, Verifier

KEY = "k" * 40
PATH = "/internal/v1/requests"


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_signed_request_passes_once() -> None:
    clock = Clock()
    headers = Signer(KEY, "gateway", clock).headers("POST", PATH, b"frame")
    verifier = Verifier(KEY, 30, clock)
    assert verifier.verify("POST", PATH, headers, b"frame") == "gateway"
    with pytest.raises(SignatureRefused, match="replayed"):
        verifier.verify("POST", PATH, headers, b"frame")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda h, b: (h, b + b"!"), "wrong signature"),  # tampered body
        (lambda h, b: ({**h, "x-cleave-service": "other"}, b), "wrong signature"),
        (lambda h, b: ({k: v for k, v in h.items() if k != "x-cleave-signature"}, b), "no service"),
        (lambda h, b: ({**h, "x-cleave-timestamp": "soon"}, b), "unreadable timestamp"),
    ],
)
def test_a_changed_request_is_refused(change, reason) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    headers, body = change(Signer(KEY, "gateway", clock).headers("POST", PATH, b"frame"), b"frame")
    with pytest.raises(SignatureRefused, match=reason):
        Verifier(KEY, 30, clock).verify("POST", PATH, headers, body)


def test_another_path_another_key_and_stale_or_future_times_are_refused() -> None:
    clock = Clock()
    headers = Signer(KEY, "gateway", clock).headers("POST", PATH, b"frame")
    with pytest.raises(SignatureRefused, match="wrong signature"):
        Verifier(KEY, 30, clock).verify(
            "POST", "/internal/v1/deliveries/ordering", headers, b"frame"
        )
    with pytest.raises(SignatureRefused, match="wrong signature"):
        Verifier("z" * 40, 30, clock).verify("POST", PATH, headers, b"frame")
    for skew in (-31.0, 31.0):
        with pytest.raises(SignatureRefused, match="stale timestamp"):
            Verifier(KEY, 30, Clock(clock.now + skew)).verify("POST", PATH, headers, b"frame")


def test_the_replay_memory_forgets_what_is_outside_the_window() -> None:
    clock = Clock()
    verifier = Verifier(KEY, 30, clock)
    for number in range(100):
        clock.now += 1
        body = str(number).encode()
        verifier.verify("POST", PATH, Signer(KEY, "g", clock).headers("POST", PATH, body), body)
    assert len(verifier._seen) <= 31
