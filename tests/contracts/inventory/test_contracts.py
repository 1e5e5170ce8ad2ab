"""The inventory module's contracts survive every wire, and its requests have one handler each."""

from entrypoints.bootstrap import shop_modules
from kernel.testing import contract_tests

TestInventoryContracts = contract_tests("inventory", shop=shop_modules)
