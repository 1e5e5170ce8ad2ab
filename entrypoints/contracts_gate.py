"""``cleave contracts export|check``: the contracts as documents, and the gate that fails on a
change that would break a module still running the earlier contracts (docs/contracts.md)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from entrypoints.settings import Settings

#: The export committed on main, which CI checks the code against (`just contracts` writes it).
COMMITTED_EXPORT = Path("contracts") / "contracts.json"
COMMITTED_ASYNCAPI = Path("contracts") / "asyncapi.json"


def add_contracts_commands(commands: Any) -> None:
    """Add ``cleave contracts export|check`` to the ``cleave`` command's subparsers."""
    contracts = commands.add_parser(
        "contracts", help="the message contracts as JSON Schema or AsyncAPI, and their gate"
    ).add_subparsers(title="contracts")

    exporting = contracts.add_parser(
        "export", help="write every module's message contracts (default: to standard output)"
    )
    exporting.add_argument(
        "--format",
        choices=["jsonschema", "asyncapi"],
        default="jsonschema",
        help="JSON Schema of every message (what check reads), or an AsyncAPI 3.0 document "
        "of every module's channels",
    )
    exporting.add_argument("--out", help="write to this file instead")
    exporting.set_defaults(action=_export)

    checking = contracts.add_parser(
        "check",
        help="fail when the contracts break an earlier export (removed message or field, "
        "changed type, new required field...)",
    )
    checking.add_argument(
        "old_export", help=f"an earlier JSON Schema export, e.g. {COMMITTED_EXPORT}"
    )
    checking.add_argument(
        "--quiet", action="store_true", help="print only breaking changes and the summary"
    )
    checking.set_defaults(action=_check)


def _export(arguments: argparse.Namespace, settings: Settings) -> int:
    from entrypoints.contracts_export import contracts_registry, export, render

    text = render(export(contracts_registry(), arguments.format))
    if arguments.out:
        out = Path(arguments.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        print(f"wrote {out}")
    else:
        sys.stdout.write(text)
    return 0


def _check(arguments: argparse.Namespace, settings: Settings) -> int:
    from entrypoints.contracts_check import compare, load_export
    from entrypoints.contracts_export import contracts_registry, json_schema

    source = Path(arguments.old_export)
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as error:
        raise ValueError(f"cannot read {source}: {error.strerror}") from None
    old = load_export(text, str(source))
    changes = compare(old, json_schema(contracts_registry()))
    breaking = [change for change in changes if change.breaking]
    for change in breaking:
        print(f"breaking: {change}")
    if not arguments.quiet:
        for change in changes:
            if not change.breaking:
                print(f"compatible: {change}")
    compatible = len(changes) - len(breaking)
    if breaking:
        print(
            f"{len(breaking)} breaking change(s) against {source} ({compatible} compatible): "
            "a module still running those contracts would fail. Evolve a contract by adding "
            "fields with defaults (docs/contracts.md)."
        )
        return 1
    print(f"contracts are compatible with {source}: {compatible} compatible change(s)")
    return 0
