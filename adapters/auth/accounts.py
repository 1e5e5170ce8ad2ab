"""The roles each user holds now, asked of identity, for the edge that checks every token.

A signed token proves what identity said when it was issued; this says what identity says now,
so that a token whose account was removed, or lost a role, stops working. The edge asks over
the bus, as the system: in a split deployment the gateway does not host identity, and the
question travels like any other query.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import msgspec
from cachetools import TTLCache

from kernel.bus import Bus
from kernel.errors import NotFound, Unavailable
from kernel.messages import SYSTEM
from modules.identity.contracts import GetUserRoles

#: How long an answer is kept. Long enough that a client's burst of requests costs one
#: query; short enough that a removed account or role is refused a few seconds later.
DEFAULT_TTL_SECONDS = 5.0
#: Subjects remembered at most (the least recently used go first).
DEFAULT_MAX_SUBJECTS = 10_000


class CurrentRoles:
    """The roles of each subject, from ``identity.GetUserRoles``, kept ``ttl_seconds``.

    ``bus`` returns the process's bus once it runs (None while it starts). Two requests of one
    subject that miss the cache at once both ask: the answer is the same, and waiting on the
    other's question would cost more code than the rare second query."""

    def __init__(
        self,
        bus: Callable[[], Bus | None],
        *,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        max_subjects: int = DEFAULT_MAX_SUBJECTS,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._bus = bus
        self._answers: TTLCache[str, frozenset[str] | None] = TTLCache(
            maxsize=max_subjects, ttl=ttl_seconds, timer=timer
        )

    async def of(self, subject: str) -> frozenset[str] | None:
        """The roles ``subject`` holds now, or None when identity has no such user."""
        try:
            return self._answers[subject]
        except KeyError:
            pass
        roles = await self._ask(subject)
        self._answers[subject] = roles
        return roles

    async def _ask(self, subject: str) -> frozenset[str] | None:
        try:
            query = msgspec.convert({"user_id": subject}, GetUserRoles)
        except msgspec.ValidationError:
            return None  # no user id looks like that: no such user
        bus = self._bus()
        if bus is None:
            raise Unavailable("the app is starting: try again in a moment")
        try:
            answer = await bus.ask(query, principal=SYSTEM)
        except NotFound:
            return None
        return frozenset(answer.roles)
