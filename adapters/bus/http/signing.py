"""Service credentials: an HMAC signature on every internal request.

The caller signs the method, the path, the SHA-256 of the body and a timestamp with the
deployment's service key (``CLEAVE_SERVICE_KEY``); the receiver recomputes it. A request
without a signature, with a wrong one, with a timestamp outside the window (stale, or from
the future) or seen before (a replay inside the window) is refused. Only a signed request's
envelope is trusted: the end user's principal travels in it, and a forged one never gets in.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping

SERVICE_HEADER = "x-cleave-service"
TIMESTAMP_HEADER = "x-cleave-timestamp"
SIGNATURE_HEADER = "x-cleave-signature"

#: Signed by nobody: the default key of a development machine. Production refuses it.
DEVELOPMENT_SERVICE_KEY = "cleave-development-service-key-change-me-0123456789"


class SignatureRefused(Exception):
    """An internal request whose credentials do not hold; the message says why."""


def _digest(key: bytes, method: str, path: str, timestamp: str, service: str, body: bytes) -> str:
    payload = b"\n".join(
        (
            method.upper().encode(),
            path.encode(),
            timestamp.encode(),
            service.encode(),
            hashlib.sha256(body).hexdigest().encode(),
        )
    )
    return hmac.new(key, payload, hashlib.sha256).hexdigest()


class Signer:
    """Signs the requests of one calling service."""

    def __init__(self, key: str, service: str, clock: Callable[[], float] = time.time) -> None:
        self._key = key.encode()
        self.service = service
        self._clock = clock

    def headers(self, method: str, path: str, body: bytes) -> dict[str, str]:
        timestamp = f"{self._clock():.6f}"
        return {
            SERVICE_HEADER: self.service,
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: _digest(self._key, method, path, timestamp, self.service, body),
        }


class Verifier:
    """Checks the signature, freshness and uniqueness of internal requests."""

    def __init__(
        self,
        key: str,
        window_seconds: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = key.encode()
        self.window = window_seconds
        self._clock = clock
        #: Signatures seen inside the window, oldest first, with when they stop mattering.
        self._seen: OrderedDict[str, float] = OrderedDict()

    def verify(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> str:
        """The calling service's name; ``SignatureRefused`` when the request is not signed
        by a service of this deployment, is stale, or was seen before."""
        signature = headers.get(SIGNATURE_HEADER)
        timestamp = headers.get(TIMESTAMP_HEADER)
        service = headers.get(SERVICE_HEADER, "")
        if not signature or not timestamp:
            raise SignatureRefused("no service signature")
        try:
            sent = float(timestamp)
        except ValueError:
            raise SignatureRefused("unreadable timestamp") from None
        now = self._clock()
        if abs(now - sent) > self.window:
            raise SignatureRefused(
                f"stale timestamp: {now - sent:+.1f}s from now, outside ±{self.window:g}s"
            )
        expected = _digest(self._key, method, path, timestamp, service, body)
        if not hmac.compare_digest(expected, signature):
            raise SignatureRefused("wrong signature")
        self._forget(now)
        if signature in self._seen:
            raise SignatureRefused("replayed request")
        self._seen[signature] = sent + self.window
        return service

    def _forget(self, now: float) -> None:
        seen = self._seen
        while seen:
            oldest, until = next(iter(seen.items()))
            if until >= now:
                break
            del seen[oldest]
