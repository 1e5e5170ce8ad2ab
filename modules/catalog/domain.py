"""The catalog's rules, in plain Python."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Product:
    sku: str
    name: str
    price_cents: int
    currency: str
    description: str = ""
    version: int = 0

    def changed(
        self, *, name: str | None, price_cents: int | None, description: str | None
    ) -> Product:
        """This product with the given fields changed (``None`` keeps a field)."""
        return replace(
            self,
            name=self.name if name is None else name,
            price_cents=self.price_cents if price_cents is None else price_cents,
            description=self.description if description is None else description,
        )
