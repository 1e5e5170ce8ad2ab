"""The payments module's contracts survive every wire, and its requests have one handler each."""

from entrypoints.bootstrap import shop_modules
from kernel.testing import contract_tests

TestPaymentsContracts = contract_tests("payments", shop=shop_modules)
