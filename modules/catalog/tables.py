"""The catalog's tables."""

from sqlalchemy import Column, Integer, MetaData, String, Table, Text

metadata = MetaData()

products = Table(
    "catalog_products",
    metadata,
    Column("sku", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("price_cents", Integer, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("version", Integer, nullable=False, default=0),
)
