"""In-memory storage and outbox: for modules without tables, tests and benchmarks."""

from adapters.memory.outbox import DeadLetter, MemoryOutbox
from adapters.memory.storage import MemoryStorage

__all__ = ["DeadLetter", "MemoryOutbox", "MemoryStorage"]
