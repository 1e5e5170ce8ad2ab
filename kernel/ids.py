"""Identifiers that are cheap enough to mint for every message."""

from __future__ import annotations

import itertools
import os
import uuid

#: The last three hex digits of every counter value, formatted once.
_LOW = tuple(f"{number:03x}" for number in range(4096))


class _MessageIds:
    # uuid4() costs about 1.5 µs; a random per-process prefix plus a counter is unique across
    # processes and restarts, and costs a tenth of that on the per-message path.
    # The id is f"{prefix}{counter:08x}"; formatting an int with a spec costs more than the
    # rest of the call, so the head (prefix and counter >> 12) is formatted once per 4096 ids
    # and the three low digits come from a table. The (block, head) pair is read and replaced
    # as one tuple, so threads minting ids concurrently never pair a head with a wrong block.
    def __init__(self) -> None:
        self.reseed()

    def reseed(self) -> None:
        self.prefix = os.urandom(8).hex()
        self.counter = itertools.count(1)
        self._last: tuple[int, str] = (-1, "")

    def __call__(self) -> str:
        number = next(self.counter)
        block, head = self._last
        if number >> 12 != block:
            block = number >> 12
            head = f"{self.prefix}{block:05x}"
            self._last = (block, head)
        return head + _LOW[number & 0xFFF]


new_message_id = _MessageIds()
os.register_at_fork(after_in_child=new_message_id.reseed)


def new_entity_id() -> str:
    """A random identifier for a domain entity (an order, a user, a charge)."""
    return uuid.uuid4().hex
