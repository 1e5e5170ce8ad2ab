"""The alembic environment of every cleave history (see adapters/sqlalchemy/migrations.py)."""

from alembic import context

from adapters.sqlalchemy.migrations import run_environment

run_environment(context)
