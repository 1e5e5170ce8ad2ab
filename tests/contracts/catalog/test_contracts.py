"""The catalog module's contracts survive every wire, and its requests have one handler each."""

from entrypoints.bootstrap import shop_modules
from kernel.testing import contract_tests

TestCatalogContracts = contract_tests("catalog", shop=shop_modules)
