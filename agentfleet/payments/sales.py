"""Selling one skill call for an x402 payment: what a bot offers, and what the buyer gets once
the payment's saga has answered (or not yet).

The steps, in order (:class:`clients.checkout.Checkout` runs them): :func:`offer_of` (the call
and its price; a free call is answered at once), :func:`seller_address` (who is paid), the
terms, the payment read and checked (:mod:`~agentfleet.payments.payload`,
:mod:`~agentfleet.payments.verification`), the saga started or joined, then :func:`outcome` of
what it answered. A refusal before the saga starts changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from x402.schemas import PaymentRequired

from agentfleet.bots.cards import SELLING, skill_call
from agentfleet.bots.model import BotKind, BotStatus, Skill, SkillCall, SkillResult
from agentfleet.models import BotRecord
from agentfleet.payments.answers import payment_required
from agentfleet.payments.model import PayloadConflict, PaymentStatus, PaymentView, Reason
from agentfleet.payments.terms import FUSD_DECIMALS, Terms, price_of
from agentfleet.redaction import redact


class NotForSale(Exception):
    """The bot sells no skill of that name."""


class NotSellingNow(Exception):
    """The bot sells nothing in its state (or has no wallet yet)."""


class CallFailed(Exception):
    """A free call's skill failed."""


@dataclass(frozen=True)
class Offer:
    """A skill call a bot sells, and its price in token units (0: free)."""

    call: SkillCall
    price: int

    @property
    def description(self) -> str:
        """What a 402 says is for sale."""
        units = self.price / 10**FUSD_DECIMALS
        return f"{self.call.skill.value} of {self.call.bot.name} ({units:g} fUSD)"


@dataclass(frozen=True)
class Answered:
    """A free call's answer: the skill's data."""

    data: dict[str, Any]


@dataclass(frozen=True)
class Unpaid:
    """Pay (again): no payment was offered, or it was refused (``required.error`` says why).
    Nothing was started or settled."""

    required: PaymentRequired


@dataclass(frozen=True)
class Pending:
    """The saga is still settling: the buyer polls it and must not pay again. ``token`` reads
    the result (None: this request did not prove it comes from the payer)."""

    payment_id: str
    token: str | None


@dataclass(frozen=True)
class Delivered:
    """Settled: the skill's data goes to the payer, with the payment's result token."""

    view: PaymentView
    data: dict[str, Any]
    token: str


@dataclass(frozen=True)
class Withheld:
    """Settled, but this request did not prove it comes from the payer: no data."""

    view: PaymentView


@dataclass(frozen=True)
class Failed:
    """The skill failed (nothing settled) or the settlement failed on chain (nothing moved)."""

    view: PaymentView
    error: str


Sale = Answered | Unpaid | Pending | Delivered | Withheld | Failed
"""What a paid skill call comes to."""


def offer_of(row: BotRecord, skill_name: str, args: dict[str, Any]) -> Offer:
    """The call of ``skill_name`` at the bot of ``row``, with its price; NotForSale when the
    bot does not sell it."""
    kind = BotKind(row.kind)
    try:
        skill = Skill(skill_name)
        price = price_of(kind, dict(row.params), skill)
    except ValueError:
        price = None
    if price is None:
        raise NotForSale(f"bot {row.name} does not sell a skill named {skill_name!r}")
    return Offer(call=skill_call(row, skill, args), price=price)


def answered(result: SkillResult) -> Answered:
    """A free call's result; CallFailed when its skill failed."""
    if not result.ok:
        raise CallFailed(result.error or "the skill failed")
    return Answered(result.data)


def seller_address(row: BotRecord) -> str:
    """The wallet a priced call pays; NotSellingNow unless the bot has one and is selling."""
    if row.address is None or BotStatus(row.status) not in SELLING:
        raise NotSellingNow(f"bot {row.name} is {row.status} and sells nothing now")
    return row.address


def outcome(
    view: PaymentView | None,
    *,
    payment_id: str,
    token: str | None,
    terms: Terms,
    resource: str,
    offer: Offer,
) -> Sale:
    """What the buyer gets from the saga's answer (``view`` None: not final yet); ``token`` is
    None unless the request may read the result. PayloadConflict when the saga refused the
    payment-identifier."""
    if view is None:
        return Pending(payment_id, token)
    if view.status is PaymentStatus.REJECTED:
        if view.reason == Reason.IDENTIFIER_CONFLICT:
            raise PayloadConflict(view.detail or "payment-identifier conflict")
        return Unpaid(payment_required(terms, resource, offer.description, view.reason))
    if view.status is PaymentStatus.SETTLED and view.result is not None:
        if token is None:
            return Withheld(view)
        return Delivered(view, view.result.data, token)
    if view.status is PaymentStatus.SKILL_FAILED:
        error = view.detail or "the skill failed"
    else:
        error = f"settlement {view.status.value}: {view.detail or view.reason}"
    return Failed(view, redact(error))
