"""The waking consumer fetches exactly as dramatiq's own consumer does.

``WakingRedisBroker.wait_and_fetch`` sends dramatiq's ``fetch`` script in the same pipeline as
its wait, so it builds the script's arguments itself; if a dramatiq release changes them, this
test says so before a worker fetches wrongly.
"""

from __future__ import annotations

from typing import Any

import pytest

from adapters.bus.redis.broker import WakingRedisBroker


def test_the_fetch_in_the_pipeline_passes_what_dramatiq_passes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # dramatiq asks Redis for this once per process (a class attribute); no Redis here.
    monkeypatch.setattr(WakingRedisBroker, "_max_unpack_size_val", 100)
    broker = WakingRedisBroker(url="redis://127.0.0.1:1/0", namespace="ns", middleware=[])
    sent: list[dict[str, Any]] = []

    class Capture:
        def __call__(self, args: list[Any], keys: list[str]) -> list[Any]:
            sent.append({"args": list(args), "keys": keys})
            return []

    broker.scripts["dispatch"] = Capture()  # type: ignore[assignment]
    broker.maintenance_chance = 0  # the one random argument: pin it
    broker.do_fetch("inventory", 7)
    ours = broker.fetch_arguments("inventory", 7)
    (theirs,) = sent
    assert theirs["keys"] == ["ns"]
    assert len(theirs["args"]) == len(ours)
    # Everything but the timestamp (second) is the same, in the same place.
    assert theirs["args"][0] == ours[0] == "fetch"
    assert abs(int(theirs["args"][1]) - int(ours[1])) < 1000  # type: ignore[call-overload]
    assert theirs["args"][2:] == ours[2:]
