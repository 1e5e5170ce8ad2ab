"""Time as a port, so that deadlines and timeouts read one clock."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Tells the current time in Unix seconds."""

    def now(self) -> float:
        """Seconds since the Unix epoch."""
        ...


class SystemClock:
    """The wall clock."""

    def now(self) -> float:
        """The system's wall-clock time."""
        return time.time()
