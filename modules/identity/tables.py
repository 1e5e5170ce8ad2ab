"""Identity's tables."""

from sqlalchemy import Column, Float, Integer, MetaData, String, Table, Text

metadata = MetaData()

users = Table(
    "identity_users",
    metadata,
    Column("id", String(64), primary_key=True),
    # Stored normalised (lower case), so the unique constraint is case-insensitive too.
    Column("email", String(254), nullable=False, unique=True),
    Column("name", String(100), nullable=False),
    Column("password_hash", Text, nullable=False),
    # The roles, comma-separated ("admin,customer"): role names never contain a comma.
    Column("roles", Text, nullable=False),
    Column("version", Integer, nullable=False, default=0),
    Column("created_at", Float, nullable=False),
)
