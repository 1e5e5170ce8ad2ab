"""A test module that declares no messages: it only listens to payments' events."""

from modules.payments.contracts import (
    PaymentCaptured,
    PaymentDeclined,
    PaymentFailed,
    PaymentVoided,
)

SUBSCRIBES_TO = (PaymentCaptured, PaymentDeclined, PaymentFailed, PaymentVoided)
