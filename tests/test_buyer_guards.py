"""The buyer's guards before it signs, on the real stack (gateway, saga, relayer, anvil): the
seller's ``payTo`` must be its ERC-8004 agent wallet, its reputation from the fleet's own bots
must reach ``spending.reputation_floor``, and the day's settled payments in the ledger count
against ``spending.per_day``. A refused purchase signs nothing and moves nothing."""

from __future__ import annotations

from datetime import UTC, datetime

from eth_account import Account
from web3 import Web3

from agentfleet import db
from agentfleet.models import PaymentRecord
from agentfleet.payments.purchases import PurchaseStatus
from tests.test_purchase_budget import Market, market, spending_of
from tests.test_purchases import PRICE, _address, _agent_id

__all__ = ["market"]


async def test_a_seller_asking_to_be_paid_off_its_agent_wallet_gets_nothing_signed(
    market: Market,
) -> None:
    fleet = market.fleet
    seller_wallet = _address(fleet, fleet.seller)
    elsewhere = Account.create().address
    before = market.balance(fleet.buyer)
    market.tamper.terms = {"payTo": elsewhere}

    view = await market.buy(fleet.buyer)

    assert view.status is PurchaseStatus.REFUSED, view
    assert view.reason == (
        f"{fleet.seller} asks to be paid at {elsewhere}, but agent "
        f"{_agent_id(fleet, fleet.seller)}'s wallet on the IdentityRegistry is {seller_wallet}"
    )
    assert view.steps == [] and market.tamper.signed == []
    assert not market.authorization_used(fleet.buyer, view.purchase_id)
    assert market.balance(fleet.buyer) == before
    token = fleet.contract("FleetUSD")
    assert token.functions.balanceOf(elsewhere).call() == 0  # type: ignore[attr-defined]


async def test_a_seller_under_the_reputation_floor_is_refused_until_the_fleet_rates_it(
    market: Market,
) -> None:
    """Reviews by strangers do not count (a seller cannot rate itself over the floor); the
    fleet's own review of 100 reaches a floor of 100."""
    fleet = market.fleet
    floor = {"spending": {"per_day": "1", "reputation_floor": "100"}}
    await _configure(market, floor)
    before = market.balance(fleet.buyer)

    unrated = await market.buy(fleet.buyer)
    _stranger_rates(market, 100)
    rated_by_stranger = await market.buy(fleet.buyer)

    for view in (unrated, rated_by_stranger):
        assert view.status is PurchaseStatus.REFUSED, view
        assert view.reason == (
            f"{fleet.seller}'s reputation from the fleet is none (0 reviews), under "
            f"{fleet.buyer}'s floor of 100"
        )
        assert view.steps == [] and not market.authorization_used(fleet.buyer, view.purchase_id)
    assert market.tamper.signed == [] and market.balance(fleet.buyer) == before

    await _configure(market, {"spending": {"per_day": "1"}})
    reviewed = await market.buy(fleet.buyer)  # no floor: it buys and leaves a review of 100
    assert reviewed.status is PurchaseStatus.DONE and reviewed.feedback_tx_hash, reviewed
    await _configure(market, floor)
    trusted = await market.buy(fleet.buyer)

    assert trusted.status is PurchaseStatus.DONE, trusted.reason
    assert market.balance(fleet.buyer) == before - 2 * PRICE


async def test_payments_settled_today_before_the_first_hold_count_against_the_daily_limit(
    market: Market,
) -> None:
    """The buyer's limit is worth 5 calls; the ledger already lists 4 calls' worth settled
    today (its entity never held them): one more purchase settles, the next is refused."""
    fleet = market.fleet
    buyer_address = _address(fleet, fleet.buyer)
    with db.session_scope(fleet.settings.effective_database_url) as session:
        session.add(
            PaymentRecord(
                payment_id=f"payment-earlier-{fleet.buyer}",
                chain_id=31337,
                asset=fleet.deployment.address("FleetUSD"),
                nonce="0x" + "11" * 32,
                payer=buyer_address,
                pay_to=_address(fleet, fleet.seller),
                amount=str(4 * PRICE),
                buyer=fleet.buyer,
                seller=fleet.seller,
                skill="forecast",
                status="settled",
                created_at=datetime.now(UTC),
            )
        )
        session.commit()
    before = market.balance(fleet.buyer)

    last = await market.buy(fleet.buyer)
    over = await market.buy(fleet.buyer)

    assert last.status is PurchaseStatus.DONE, last.reason
    assert over.status is PurchaseStatus.REFUSED, over
    assert over.reason == (
        f"{fleet.buyer} has {5 * PRICE} units spent or held today; {PRICE} more would pass "
        f"its daily limit of {5 * PRICE}"
    )
    assert over.steps == ["discovered"] and len(market.tamper.signed) == 1
    assert not market.authorization_used(fleet.buyer, over.purchase_id)
    assert market.balance(fleet.buyer) == before - PRICE
    book = await spending_of(market, fleet.buyer)
    assert book["seeded"] == 4 * PRICE and book["spent"] == {last.purchase_id: PRICE}


async def _configure(market: Market, params: dict[str, object]) -> None:
    from clients.bots import configure_bot

    await configure_bot(market.fleet.client, market.fleet.buyer, params)


def _stranger_rates(market: Market, value: int) -> None:
    """A review of the seller from an address that is none of the fleet's bots."""
    fleet = market.fleet
    stranger = Account.create()
    w3: Web3 = fleet.w3
    w3.provider.make_request("anvil_setBalance", [stranger.address, hex(10**18)])  # type: ignore[arg-type]
    registry = fleet.contract("ReputationRegistry")
    call = registry.functions.giveFeedback(  # type: ignore[attr-defined]
        _agent_id(fleet, fleet.seller), value, 0, "x402", "forecast", "", "", b"\0" * 32
    )
    tx = call.build_transaction(
        {
            "from": stranger.address,
            "nonce": w3.eth.get_transaction_count(stranger.address),
            "chainId": w3.eth.chain_id,
        }
    )
    sent = w3.eth.send_raw_transaction(stranger.sign_transaction(tx).raw_transaction)
    receipt = w3.eth.wait_for_transaction_receipt(sent)
    assert receipt["status"] == 1
    summary = registry.functions.getSummary(  # type: ignore[attr-defined]
        _agent_id(fleet, fleet.seller), [stranger.address], "", ""
    ).call()
    assert summary[0] == 1, "the stranger's review is on chain"
