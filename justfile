# Recipes for working on Cleave. `just` comes with the dev extras (rust-just).

# serve the whole shop on http://127.0.0.1:8000 (SQLite, in-process bus)
run *args:
    .venv/bin/cleave run {{args}}

# the whole test suite, as CI runs it
test *args:
    .venv/bin/pytest {{args}}

# ruff, mypy --strict on the kernel, and the module boundaries
lint:
    .venv/bin/ruff check .
    .venv/bin/mypy kernel
    .venv/bin/lint-imports

# format the code
fmt:
    .venv/bin/ruff format .
    .venv/bin/ruff check --fix .

# the order flow in one command, on a fresh database
demo:
    .venv/bin/cleave demo

# full benchmarks; writes bench/RESULTS.md
bench *args:
    .venv/bin/pip install --quiet -e '.[dev,bench]'
    .venv/bin/python -m bench.run {{args}}

# a smoke run of the benchmarks (about two minutes); prints one JSON object last
bench-quick:
    .venv/bin/pip install --quiet -e '.[dev,bench]'
    .venv/bin/python -m bench.run --quick
