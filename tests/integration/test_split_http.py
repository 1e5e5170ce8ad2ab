"""The shop split over HTTP as real processes: what only a split deployment can get wrong.

* Internal endpoints accept only requests signed by a service of the deployment: unsigned,
  tampered, stale, replayed and user-token calls are refused with 401 and a log line, and an
  envelope claiming the system principal gets in only inside a signed request.
* A service killed mid-workload (SIGKILL): calls that need it fail fast with 503, the rest of
  the API keeps working, and once it is back every order ends with nothing lost and nothing
  charged twice.
* A service runs its own module alone: it imports no other module's code but contracts.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters.bus.http.client import REQUESTS_PATH
from adapters.bus.http.signing import Signer
from entrypoints.bootstrap import shop_contracts
from entrypoints.up import ROOT, Deployment
from kernel.codec import Codec
from kernel.ids import new_message_id
from kernel.messages import SYSTEM, Envelope, Message
from kernel.module import declared_messages
from modules.catalog.contracts import AddProduct, GetProduct
from tests.support.deployments import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    dead_letters,
    deployed,
    free_ports,
)
from tests.support.invariants import check_shop
from tests.support.shop_client import ShopClient

pytestmark = pytest.mark.slow

CODEC = Codec(
    [cls for contracts in shop_contracts().values() for cls in declared_messages(contracts)],
    "json",
)


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    directory = tmp_path_factory.mktemp("split")
    # Deliveries keep trying while a killed service comes back, and no order may end by
    # timing out: a lost message must show as an order that never ends, not as a cancel.
    environment = {"CLEAVE_DELIVERY_ATTEMPTS": "14", "CLEAVE_ORDER_TIMEOUT_SECONDS": "600"}
    with deployed("split-http", directory, environment) as deployment:
        yield deployment


def frame(message: Message, principal: Any = None) -> bytes:
    envelope = Envelope(
        message_id=new_message_id(),
        name=type(message).__struct_config__.tag,  # type: ignore[arg-type]
        principal=principal,
    )
    return CODEC.encode(envelope, message)


def post(url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(
        url + REQUESTS_PATH,
        content=body,
        headers={"content-type": "application/json", **headers},
        timeout=10,
    )


def test_internal_endpoints_refuse_every_call_that_is_not_signed(split: Deployment) -> None:
    catalog = split.child("catalog").url
    key = split.environ["CLEAVE_SERVICE_KEY"]
    body = frame(GetProduct(sku="NOPE-1"))
    signer = Signer(key, "gateway")

    unsigned = post(catalog, body, {})
    wrong = post(
        catalog, body, Signer("another-key-" * 4, "gateway").headers("POST", REQUESTS_PATH, body)
    )
    stale = post(
        catalog,
        body,
        Signer(key, "gateway", clock=lambda: time.time() - 120).headers(
            "POST", REQUESTS_PATH, body
        ),
    )
    tampered_headers = signer.headers("POST", REQUESTS_PATH, body)
    tampered = post(catalog, frame(GetProduct(sku="OTHER-1")), tampered_headers)
    with ShopClient(split.gateway_url) as shop:
        admin = shop.log_in(ADMIN_EMAIL, ADMIN_PASSWORD)
    user_token = post(catalog, body, {"authorization": f"Bearer {admin}"})
    for name, answer in [
        ("unsigned", unsigned),
        ("wrong key", wrong),
        ("stale", stale),
        ("tampered body", tampered),
        ("user token", user_token),
    ]:
        assert answer.status_code == 401, (name, answer.status_code, answer.text)
        assert answer.headers["content-type"].startswith("application/problem+json"), name

    headers = signer.headers("POST", REQUESTS_PATH, body)
    first = post(catalog, body, headers)
    replayed = post(catalog, body, headers)
    assert first.status_code == 200, first.text
    # The signed call is answered: the catalog's typed error, as the caller's exception.
    with pytest.raises(Exception) as missing:
        CODEC.decode_reply(first.content, GetProduct)
    assert type(missing.value).__name__ == "NotFound"
    assert replayed.status_code == 401 and "replayed" in replayed.text

    log = split.child("catalog").tail(20_000)
    for reason in ("no service signature", "wrong signature", "stale timestamp", "replayed"):
        assert reason in log, f"no log line for a refused call ({reason})"


def test_the_system_principal_gets_in_only_inside_a_signed_request(split: Deployment) -> None:
    catalog = split.child("catalog").url
    forged = frame(AddProduct(sku="FORGED-1", name="Forged", price_cents=1), principal=SYSTEM)
    assert post(catalog, forged, {}).status_code == 401
    public = httpx.get(f"{split.gateway_url}/api/v1/catalog/products/FORGED-1", timeout=10)
    assert public.status_code == 404, public.text

    signed = frame(AddProduct(sku="SIGNED-1", name="Signed", price_cents=1), principal=SYSTEM)
    headers = Signer(split.environ["CLEAVE_SERVICE_KEY"], "gateway").headers(
        "POST", REQUESTS_PATH, signed
    )
    assert post(catalog, signed, headers).status_code == 200
    public = httpx.get(f"{split.gateway_url}/api/v1/catalog/products/SIGNED-1", timeout=10)
    assert public.status_code == 200, public.text


def test_a_killed_service_fails_fast_and_nothing_is_lost(split: Deployment) -> None:
    with ShopClient(split.gateway_url, timeout=15) as shop:
        killed_mid_workload(split, shop)


def killed_mid_workload(split: Deployment, shop: ShopClient) -> None:
    admin = shop.log_in(ADMIN_EMAIL, ADMIN_PASSWORD)
    restocked = {"KILL-TEA": 40, "KILL-POT": 40}
    for sku, quantity in restocked.items():
        assert shop.add_product(admin, sku, 300).status == 201
        assert shop.restock(admin, sku, quantity).status == 200
    customer = "kill-customer@example.com"
    assert shop.register(customer, "Kill").status == 201
    token = shop.log_in(customer)
    placed: list[str] = []

    def order(sku: str, quantity: int) -> None:
        answer = shop.place_order(token, [(sku, quantity)], "tok_ok")
        assert answer.status == 202, answer
        placed.append(answer.body["id"])

    for number in range(10):
        order("KILL-TEA" if number % 3 else "KILL-POT", 1 + number % 2)
    split.kill("payments")

    # What needs payments fails fast; everything else answers as before.
    charges = shop.call("GET", f"/api/v1/payments/{placed[0]}", admin)
    assert charges.status == 503, charges
    assert charges.headers["retry-after"]
    assert shop.call("GET", "/api/v1/catalog/products").status == 200
    for number in range(10):
        order("KILL-TEA" if number % 3 else "KILL-POT", 1 + number % 2)  # accepted meanwhile
    split.restart("payments")
    for number in range(10):
        order("KILL-TEA" if number % 3 else "KILL-POT", 1 + number % 2)

    orders = {order_id: shop.settled(token, order_id, within=90) for order_id in placed}
    provider = split.environ["CLEAVE_PAYMENT_PROVIDER_URL"]
    ledger = httpx.get(f"{provider}/v1/charges", timeout=10).json()
    ours = [charge for charge in ledger if charge["reference"] in orders]
    stock = {sku: shop.call("GET", f"/api/v1/inventory/{sku}").body for sku in restocked}
    statuses = check_shop(orders, ours, stock, restocked)
    assert statuses == {"CONFIRMED": len(placed)}, statuses  # enough stock, cards that pay
    assert not [answer for answer in shop.answers if answer[2] == 500], "a 500 answered"
    assert dead_letters(split) == []


IMPORTS = """
import runpy, sys, threading, time, urllib.request
out, ready = sys.argv[1], sys.argv[2]
def dump():
    while True:
        try:
            if urllib.request.urlopen(ready, timeout=1).status == 200:
                break
        except Exception:
            time.sleep(0.1)
    open(out, "w").write("\\n".join(sorted(sys.modules)))
threading.Thread(target=dump, daemon=True).start()
sys.argv = ["cleave", *sys.argv[3:]]
runpy.run_module("entrypoints.cli", run_name="__main__")
"""


def test_a_service_imports_no_other_modules_code_than_contracts(
    split: Deployment, tmp_path: Path
) -> None:
    port = free_ports(1)
    report = tmp_path / "modules.txt"
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            IMPORTS,
            str(report),
            f"http://127.0.0.1:{port}/health/ready",
            "serve",
            "inventory",
            "--topology",
            split.topology_path,
            "--port",
            str(port),
        ],
        cwd=ROOT,
        env={**split.environ, "CLEAVE_DATA_DIR": str(tmp_path)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        end = time.monotonic() + 60
        while not report.exists() and time.monotonic() < end and process.poll() is None:
            time.sleep(0.1)
    finally:
        process.terminate()
        process.wait(timeout=30)
    imported = [name for name in report.read_text().split() if name.startswith("modules.")]
    assert "modules.inventory.handlers" in imported  # it does run inventory
    foreign = [
        name
        for name in imported
        if not name.startswith("modules.inventory")
        and not name.endswith(".contracts")
        and name.count(".") > 1
    ]
    assert foreign == [], f"inventory's service imports other modules' code: {foreign}"
