"""The shop's modules fit together: the registry accepts them, checked once for the shop.

Each module's generated contract tests check that module alone; whether the modules agree with
each other (one handler per command and query, in its own module; subscriptions only to events
some module declares; no message name used twice) is one fact about the shop, so it is one
test, not one per module.
"""

from __future__ import annotations

from entrypoints.bootstrap import shop_modules
from kernel.testing import check_shop


def test_the_shop_registry_builds() -> None:
    check_shop(shop_modules())
