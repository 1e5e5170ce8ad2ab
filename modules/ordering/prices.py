"""What ordering knows of the catalog's prices (ADR 0018).

Two things, one per process:

- a read cache for ``PlaceOrder``: each product's price, currency and catalog version as the
  catalog last answered a ``GetProducts``, used for at most ``max_age_seconds`` after that
  answer and moved forward by the catalog's ``ProductUpdated`` events meanwhile. An order
  whose products are all cached costs no call to the catalog, which in a split deployment is
  a round trip to another service;
- the versions the catalog's events announced, with when each change was made, so that the
  saga can tell, before it asks for a payment, whether an order was priced at a version the
  catalog had already replaced when the order was placed.

Nothing here is persisted: a process starts empty, and each instance of ordering keeps its
own. Ages are measured on the monotonic clock of this process; ``changed_at`` and an order's
``placed_at`` are wall-clock times (the catalog's and ordering's).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from kernel import Bus
from modules.catalog.contracts import GetProducts, Product

#: Products kept at most (an order names at most a few hundred): past it the oldest answers
#: are forgotten first.
MAX_PRODUCTS = 10_000
#: Versions remembered per product for the check before a capture: a product changed more
#: often than this within one order's life is checked conservatively (see ``changed_before``).
MAX_VERSIONS = 16


@dataclass(frozen=True)
class Price:
    """A product's price as the catalog gave it, and the catalog's version of the product."""

    price_cents: int
    currency: str
    version: int


@dataclass
class _Cached:
    price: Price
    #: When the catalog's answer behind this entry arrived (monotonic seconds): the entry is
    #: used until ``max_age_seconds`` after it, whatever events moved it forward since.
    answered: float


class PriceBook:
    """The catalog's prices as ordering last saw them; one per process (ADR 0018)."""

    def __init__(
        self, max_age_seconds: float, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        #: 0 turns the cache off: every order asks the catalog (versions are still checked).
        self.max_age_seconds = max_age_seconds
        self._monotonic = monotonic
        self._cached: dict[str, _Cached] = {}
        #: sku -> {version: what the catalog said of it}, the last ``MAX_VERSIONS``.
        self._versions: dict[str, dict[int, _Version]] = {}

    async def current(self, skus: list[str], bus: Bus) -> dict[str, Price]:
        """The prices of ``skus`` (unknown SKUs are absent): from the cache while it is fresh,
        otherwise from one ``GetProducts`` for those that are not."""
        found: dict[str, Price] = {}
        missing: list[str] = []
        now = self._monotonic()
        for sku in skus:
            cached = self._cached.get(sku)
            if cached is not None and now - cached.answered < self.max_age_seconds:
                found[sku] = cached.price
            else:
                missing.append(sku)
        if missing:
            products: list[Product] = await bus.ask(GetProducts(skus=missing))
            found.update(self.answered(products))
        return found

    def answered(self, products: Iterable[Product]) -> dict[str, Price]:
        """Keep what the catalog just answered; the prices to use now, by SKU."""
        now = self._monotonic()
        prices: dict[str, Price] = {}
        for product in products:
            price = Price(product.price_cents, product.currency, product.version)
            self._learn(product.sku, product.version, price, None)
            cached = self._cached.get(product.sku)
            if cached is not None and cached.price.version > price.version:
                # An event overtook this answer: it is newer, and the answer still dates it.
                price = cached.price
            self._cached.pop(product.sku, None)  # re-inserted last: the newest answer
            if self.max_age_seconds > 0:
                self._cached[product.sku] = _Cached(price, now)
            prices[product.sku] = price
        while len(self._cached) > MAX_PRODUCTS:
            del self._cached[next(iter(self._cached))]
        return prices

    def changed(
        self, sku: str, version: int, price_cents: int, currency: str, changed_at: float
    ) -> None:
        """The catalog says ``sku`` is at ``version`` since ``changed_at`` (an event).

        A cached entry moves forward to it, keeping the age of the answer it came from; an
        older or repeated event changes nothing. A SKU not cached stays uncached: its next
        order asks the catalog.
        """
        price = Price(price_cents, currency, version)
        self._learn(sku, version, price, changed_at or None)
        cached = self._cached.get(sku)
        if cached is not None and version > cached.price.version:
            cached.price = price

    def changed_before(self, priced: Mapping[str, int], placed_at: float) -> str | None:
        """The first SKU of ``priced`` (sku -> version the order was priced at) whose price
        the catalog had changed when the order was placed, as far as this process knows;
        ``None`` if none.

        The version current at ``placed_at`` is the last of the versions after the priced
        one, in order, made at or before it; a change of name or description only is no
        change of price. When that cannot be told (a version in between is not known, or is
        known without its time: a query told it, or its event is late or forgotten), the
        order counts as stale: it is not charged a price that may be old (ADR 0018).
        """
        for sku, version in priced.items():
            known = self._versions.get(sku)
            if not known or max(known) <= version:
                continue
            current = version
            while current + 1 in known:
                when = known[current + 1].changed_at
                if when is None:
                    return sku
                if when > placed_at:
                    break
                current += 1
            else:
                if current < max(known):
                    return sku  # a gap: what came before the newest is not known
            then, was = known.get(current), known.get(version)
            if then is None or was is None or then.price.price_cents != was.price.price_cents:
                return sku
            if then.price.currency != was.price.currency:
                return sku
        return None

    def _learn(self, sku: str, version: int, price: Price, changed_at: float | None) -> None:
        known = self._versions.get(sku)
        if known is None:
            if len(self._versions) >= MAX_PRODUCTS:
                del self._versions[next(iter(self._versions))]
            known = self._versions[sku] = {}
        seen = known.get(version)
        if seen is None or seen.changed_at is None:
            known[version] = _Version(price, changed_at)
        if len(known) > MAX_VERSIONS:
            del known[min(known)]


@dataclass(frozen=True)
class _Version:
    """One version of a product: its price, and when the catalog made it (``None``: not
    known, a query told it)."""

    price: Price
    changed_at: float | None
