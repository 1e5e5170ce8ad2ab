"""The payments module's declaration."""

from __future__ import annotations

from typing import Any

from kernel import Module
from modules.payments import api, contracts, handlers
from modules.payments.repository import Charges
from modules.payments.tables import metadata


def register(container: Any) -> None:
    # The PaymentProvider port is bound by the composition root (an adapter).
    container.register(Charges)


module = Module(
    name="payments",
    contracts=contracts,
    handlers={
        contracts.CapturePayment: handlers.capture_payment,
        contracts.VoidPayment: handlers.void_payment,
        contracts.GetCharges: handlers.get_charges,
    },
    wiring=register,
    routes=api.routes,
    tables=metadata,
)
