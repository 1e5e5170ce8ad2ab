"""The notifications module's contracts survive every wire; its queries have one handler each."""

from entrypoints.bootstrap import shop_modules
from kernel.testing import contract_tests

TestNotificationsContracts = contract_tests("notifications", shop=shop_modules)
