"""The kernel's test kit: hypothesis strategies for msgspec types, and module contract tests.

Only tests import it; the kernel never does. It needs hypothesis, which the ``testing`` extra
(``pip install cleave[testing]``, part of ``dev``) brings.
``strategy_for(tp)`` generates values that honour ``tp``'s ``msgspec.Meta`` constraints, and
``contract_tests("<module>", shop=shop_modules)`` is a module's whole contract test file.
"""

try:
    import hypothesis  # noqa: F401  (the kit is built on it)
except ImportError as error:  # pragma: no cover - only without the extra
    raise ImportError(
        "kernel.testing, the contract-test kit, needs hypothesis: install cleave[testing] "
        "(pip install -e '.[testing]'; the dev extra includes it)"
    ) from error

from kernel.testing.contracts import (
    DEFAULT_MAX_EXAMPLES,
    check_codec_round_trip,
    check_error_round_trip,
    check_handlers,
    check_no_result,
    check_result_round_trip,
    check_round_trip,
    check_shop,
    contract_tests,
    declared_structs,
)
from kernel.testing.strategies import UnsupportedType, strategy_for

__all__ = [
    "DEFAULT_MAX_EXAMPLES",
    "UnsupportedType",
    "check_codec_round_trip",
    "check_error_round_trip",
    "check_handlers",
    "check_no_result",
    "check_result_round_trip",
    "check_round_trip",
    "check_shop",
    "contract_tests",
    "declared_structs",
    "strategy_for",
]
