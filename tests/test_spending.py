"""The daily budget's rules, as the bot entity applies them (pure: no server needed)."""

from __future__ import annotations

from datetime import date

from agentfleet.payments.spending import SpendingHold, SpendingRef, day_of, decide, release, settle


def test_a_day_is_seeded_once_from_the_ledger_and_the_next_day_starts_afresh() -> None:
    def ask(pid: str, day: date, settled: int) -> SpendingHold:
        return SpendingHold(purchase_id=pid, amount=5, day=day, settled_today=settled)

    monday, tuesday = date(2026, 12, 7), date(2026, 12, 8)
    book = day_of(None, ask("p1", monday, 7))
    assert decide(book, ask("p1", monday, 7), "b", 12).granted
    # A later figure would count p1 again once it settles: the day keeps its seed.
    assert day_of(book, ask("p2", monday, 12)) is book
    assert not decide(book, ask("p2", monday, 12), "b", 12).granted
    settle(book, SpendingRef(purchase_id="p1"))
    release(book, SpendingRef(purchase_id="p1"))
    assert (book.seeded, book.held, book.spent, book.committed) == (7, {}, {"p1": 5}, 12)

    tomorrow = day_of(book, ask("p3", tuesday, 3))
    assert (tomorrow.day, tomorrow.seeded, tomorrow.spent, tomorrow.refused) == (tuesday, 3, {}, {})
    assert decide(tomorrow, ask("p3", tuesday, 3), "b", 12).granted
