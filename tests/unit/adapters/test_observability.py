"""The message observer's log lines and metric families, and the JSON log format."""

from __future__ import annotations

import json
import logging

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from adapters.observability.logs import FIELDS, formatter
from adapters.observability.messages import MessageObserver
from kernel.messages import Envelope, Principal
from kernel.registry import Endpoint
from modules.catalog.contracts import GetProduct
from modules.ordering.contracts import PlaceOrder

PLACE = Endpoint("ordering.place_order", "ordering", PlaceOrder, lambda m: None, "command")
LOOK_UP = Endpoint("catalog.get_product", "catalog", GetProduct, lambda m: None, "query")
ADA = Principal(subject="user-1", roles=("customer",))


def envelope(name: str, **fields: object) -> Envelope:
    return Envelope(message_id="m-1", name=name, principal=ADA, **fields)  # type: ignore[arg-type]


def test_a_json_line_carries_the_fields_of_a_record_and_any_other_logger() -> None:
    render = formatter("json")
    ours = logging.LogRecord("cleave.messages", logging.INFO, __file__, 1, "%s", ("x",), None)
    setattr(ours, FIELDS, {"module": "ordering", "message": "ordering.PlaceOrder", "gone": None})
    line = json.loads(render.format(ours))
    assert line["module"] == "ordering"
    assert line["message"] == "ordering.PlaceOrder"
    assert "gone" not in line and line["level"] == "info" and line["logger"] == "cleave.messages"
    theirs = logging.LogRecord("uvicorn.error", logging.WARNING, __file__, 1, "hi %d", (3,), None)
    assert json.loads(render.format(theirs))["event"] == "hi 3"


@pytest.mark.parametrize("log_format", ["json", "console"])
def test_uvicorns_coloured_copy_of_a_message_is_not_printed_as_a_key(log_format: str) -> None:
    record = logging.LogRecord("uvicorn.error", logging.INFO, __file__, 1, "Started", (), None)
    record.color_message = "\x1b[1mStarted\x1b[0m"
    line = formatter(log_format).format(record)  # type: ignore[arg-type]
    assert "Started" in line and "color_message" not in line


def test_commands_log_at_info_queries_at_debug_failures_at_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    observer = MessageObserver()
    traced = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with caplog.at_level(logging.DEBUG, logger="cleave.messages"):
        observer.handled(
            PLACE,
            envelope("ordering.PlaceOrder", traceparent=traced),
            0.002,
            "handled",
            "inprocess",
        )
        observer.handled(LOOK_UP, envelope("catalog.GetProduct"), 0.0001, "handled", "inprocess")
        observer.handled(PLACE, envelope("ordering.PlaceOrder"), 0.003, "failed", "wire")
    levels = [record.levelno for record in caplog.records]
    assert levels == [logging.INFO, logging.DEBUG, logging.WARNING]
    fields = getattr(caplog.records[0], FIELDS)
    assert fields["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert fields["correlation_id"] == "m-1"  # the first message of a conversation
    assert fields["user_id"] == "user-1"
    assert fields["duration_ms"] == 2.0
    assert getattr(caplog.records[2], FIELDS)["transport"] == "wire"


def test_counts_and_latencies_become_prometheus_families() -> None:
    observer = MessageObserver(wire="http")
    for seconds in (0.0002, 0.003, 0.003, 20.0):
        observer.handled(PLACE, envelope("ordering.PlaceOrder"), seconds, "handled", "wire")
    observer.handled(PLACE, envelope("ordering.PlaceOrder"), 0.004, "refused", "wire")
    registry = CollectorRegistry()
    registry.register(observer)
    families = {
        f.name: f.samples
        for f in text_string_to_metric_families(generate_latest(registry).decode())
    }
    counts = {
        s.labels["outcome"]: s.value
        for s in families["cleave_messages_handled"]
        if s.name.endswith("_total")
    }
    assert counts == {"handled": 4, "refused": 1}
    buckets = {
        s.labels["le"]: s.value
        for s in families["cleave_message_handling_seconds"]
        if s.name.endswith("_bucket")
    }
    assert buckets["0.0005"] == 1
    assert buckets["0.005"] == 4  # outcomes share one histogram per message
    assert buckets["10.0"] == 4
    assert buckets["+Inf"] == 5
    labels = dict(families["cleave_message_handling_seconds"][0].labels)
    labels.pop("le")
    assert labels == {"module": "ordering", "message": "ordering.PlaceOrder", "transport": "http"}
