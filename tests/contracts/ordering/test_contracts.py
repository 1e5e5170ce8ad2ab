"""The ordering module's contracts survive every wire, and its requests have one handler each."""

from entrypoints.bootstrap import shop_modules
from kernel.testing import contract_tests

TestOrderingContracts = contract_tests("ordering", shop=shop_modules)
