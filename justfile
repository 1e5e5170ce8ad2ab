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

# write docs/modules.md (the module map, the recorded order flow) and the README's map;
# a test fails while either is stale
docs:
    .venv/bin/cleave graph --format markdown --out docs/modules.md
    .venv/bin/cleave graph --into README.md

# write contracts/: every message's JSON Schema (what CI checks against) and the AsyncAPI document
contracts:
    .venv/bin/cleave contracts export --format jsonschema --out contracts/contracts.json
    .venv/bin/cleave contracts export --format asyncapi --out contracts/asyncapi.json

# full benchmarks; writes bench/RESULTS.md
bench *args:
    .venv/bin/pip install --quiet -e '.[dev,bench]'
    .venv/bin/python -m bench.run {{args}}

# a smoke run of the benchmarks (about two minutes); prints one JSON object last
bench-quick:
    .venv/bin/pip install --quiet -e '.[dev,bench]'
    .venv/bin/python -m bench.run --quick
