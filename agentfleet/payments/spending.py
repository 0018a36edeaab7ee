"""A buyer's daily budget: what it has spent and holds today, kept by its bot entity.

A purchase holds its amount before it signs anything (``hold_spending``, an update of
``bot-{name}``); the hold becomes spent when the purchase settles (``settle_spending``) and is
dropped when it surely paid nothing (``release_spending``). Holds are granted one at a time by
the entity, so purchases started together cannot all see the same total: the day's spent plus
held plus the new amount must stay within ``spending.per_day``. A purchase whose outcome is not
known keeps its hold.

The functions here are pure (the entity calls them from its handlers): same state and request,
same answer. The entity keeps only the current UTC day. The first hold of a day seeds it with
the ledger's settled figure for that day (payments that settled before the entity saw the day:
by purchases that held no budget, or held it the day before); later figures are not added, since
the ledger also lists the purchases the entity already counts.
"""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, Field

REMEMBERED_REFUSALS = 200
"""Refusals a day remembers by purchase id (grants are all remembered, as holds or spent)."""


class HoldAsk(BaseModel):
    """A purchase asking its buyer's entity for a hold (the ``hold_spending`` activity)."""

    buyer: str
    purchase_id: str
    amount: int


class SpendingHold(BaseModel):
    """Ask to hold ``amount`` units of the buyer's daily budget for one purchase."""

    purchase_id: str = Field(min_length=1)
    amount: int = Field(gt=0)
    day: date
    """The UTC day ``settled_today`` was read for; the entity refuses a figure of another day."""
    settled_today: int = Field(ge=0)
    """Units of the buyer's settled payments in the ledger since 00:00 UTC of ``day``."""


class SpendingRef(BaseModel):
    """One purchase's hold, to settle or release."""

    purchase_id: str


class SpentAmount(BaseModel):
    """A hold that ended costing ``amount`` units (an agent's model call: its real cost)."""

    purchase_id: str
    amount: int = Field(ge=0)


class HoldAnswer(BaseModel):
    """Granted, or refused with a reason; the same purchase id always gets the same answer."""

    purchase_id: str
    granted: bool
    reason: str | None = None


class SpendingDay(BaseModel):
    """One UTC day of a buyer's budget, in token units."""

    day: date
    seeded: int = 0
    """The ledger's settled figure when the entity first saw this day."""
    held: dict[str, int] = Field(default_factory=dict)
    """Purchase id -> units held (granted, not settled or released yet)."""
    spent: dict[str, int] = Field(default_factory=dict)
    """Purchase id -> units of a held purchase that settled."""
    refused: dict[str, str] = Field(default_factory=dict)
    """Purchase id -> reason, the latest REMEMBERED_REFUSALS only."""

    @property
    def committed(self) -> int:
        """Units that count against the limit: seeded, spent and held."""
        return self.seeded + sum(self.spent.values()) + sum(self.held.values())


def day_of(book: SpendingDay | None, hold: SpendingHold) -> SpendingDay:
    """The book for ``hold.day``: ``book`` itself when it is that day's, else a new day seeded
    with the hold's ledger figure (the past day is dropped)."""
    if book is not None and book.day == hold.day:
        return book
    return SpendingDay(day=hold.day, seeded=hold.settled_today)


def decide(book: SpendingDay, hold: SpendingHold, buyer: str, limit: int) -> HoldAnswer:
    """Grant ``hold`` when the day's committed units plus its amount stay within ``limit``
    (recording it in ``book``), else refuse it with the reason; a purchase asked again gets its
    first answer."""
    pid = hold.purchase_id
    if pid in book.held or pid in book.spent:
        return HoldAnswer(purchase_id=pid, granted=True)
    if pid in book.refused:
        return HoldAnswer(purchase_id=pid, granted=False, reason=book.refused[pid])
    committed = book.committed
    if committed + hold.amount <= limit:
        book.held[pid] = hold.amount
        return HoldAnswer(purchase_id=pid, granted=True)
    reason = (
        f"{buyer} has {committed} units spent or held today; {hold.amount} more would pass "
        f"its daily limit of {limit}"
    )
    book.refused[pid] = reason
    for old in list(book.refused)[:-REMEMBERED_REFUSALS]:
        del book.refused[old]
    return HoldAnswer(purchase_id=pid, granted=False, reason=reason)


def settle(book: SpendingDay | None, ref: SpendingRef) -> None:
    """The purchase settled: its hold is spent. Nothing for a purchase the book does not hold."""
    if book is not None and ref.purchase_id in book.held:
        book.spent[ref.purchase_id] = book.held.pop(ref.purchase_id)


def release(book: SpendingDay | None, ref: SpendingRef) -> None:
    """The purchase paid nothing: its hold is dropped. Nothing for one the book does not hold."""
    if book is not None:
        book.held.pop(ref.purchase_id, None)


def settle_amount(book: SpendingDay | None, spent: SpentAmount) -> None:
    """The hold ended costing ``spent.amount`` (more or less than held): that is spent. A cost
    whose hold was refused and then let through by a human counts too."""
    if book is not None:
        book.held.pop(spent.purchase_id, None)
        book.spent[spent.purchase_id] = spent.amount
