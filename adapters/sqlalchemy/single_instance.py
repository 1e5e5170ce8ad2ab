"""One process at a time on a SQLite file.

SQLite has one writer, and a module's relay reads its outbox without claiming rows (claims
are PostgreSQL's ``FOR UPDATE SKIP LOCKED``). Two processes running the same modules on one
file would deliver each record twice and fight for the writer, so the second one is refused
at start-up with what to do instead. The lock is an OS file lock: it goes away with the
process, however it ends.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from adapters.sqlalchemy.database import Database
from kernel.errors import ConfigurationError


class FileClaim:
    """A held claim on a SQLite file; ``release`` gives it up."""

    def __init__(self, handle: IO[str]) -> None:
        self._handle = handle

    def release(self) -> None:
        if not self._handle.closed:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()


def claim_sqlite_file(database: Database, owner: str) -> FileClaim:
    """Claim ``database``'s file for this process, or raise ``ConfigurationError``."""
    path = Path(str(database.url.database)).resolve()
    lock_path = path.with_name(path.name + ".lock")
    handle = lock_path.open("a+", encoding="utf-8")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise ConfigurationError(
            f"{path} is already used by {holder}: SQLite allows one process per file. "
            "To run several instances of a module, give it a PostgreSQL database "
            "(CLEAVE_<MODULE>_DATABASE_URL)."
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{owner} (pid {os.getpid()})\n")
    handle.flush()
    return FileClaim(handle)
