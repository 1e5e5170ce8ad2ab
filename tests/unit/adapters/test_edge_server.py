"""The server's event loop: failed accepts are reported once in a while, not each one."""

from __future__ import annotations

import errno
import logging

import pytest

from adapters.http.server import quiet_loop


def test_failed_accepts_are_logged_once_not_thousands_of_times(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = quiet_loop()
    try:
        handler = loop.get_exception_handler()
        assert handler is not None
        error = OSError(errno.EMFILE, "Too many open files")
        with caplog.at_level(logging.DEBUG):
            # What asyncio reports for each accept() of one burst past the file limit.
            for _ in range(2048):
                handler(
                    loop, {"message": "socket.accept() out of system resource", "exception": error}
                )
        assert len(caplog.records) == 1
        assert "Too many open files" in caplog.text
    finally:
        loop.close()


def test_other_loop_errors_are_still_reported(caplog: pytest.LogCaptureFixture) -> None:
    loop = quiet_loop()
    try:
        handler = loop.get_exception_handler()
        assert handler is not None
        with caplog.at_level(logging.ERROR):
            for _ in range(3):
                handler(loop, {"message": "something else went wrong"})
        assert caplog.text.count("something else went wrong") == 3
    finally:
        loop.close()
