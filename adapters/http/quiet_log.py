"""Log a recurring condition once in a while, not once per occurrence: a flood of clients
(or a store that is down) must not turn into a flood of log lines."""

from __future__ import annotations

import time


class EveryFewSeconds:
    """``now()`` is True at most once per ``seconds``; ``suppressed`` counts the others since."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.suppressed = 0
        self._last = -float("inf")

    def now(self) -> bool:
        current = time.monotonic()
        if current - self._last < self.seconds:
            self.suppressed += 1
            return False
        self._last = current
        return True

    def take_suppressed(self) -> int:
        """How many were held back since the last one logged (and start counting again)."""
        count, self.suppressed = self.suppressed, 0
        return count
