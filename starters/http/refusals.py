"""The HTTP status of each refusal the payment steps raise (:mod:`clients.checkout`): the
answer is ``{"detail": <the refusal's one line>}`` with that status, like any HTTPException."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import HTTPException

from agentfleet.payments.model import MalformedPayment, PayloadConflict
from agentfleet.payments.sales import CallFailed, NotForSale, NotSellingNow
from clients.payments import NoSuchPayment, PaymentsUnavailable, SagaEnded

STATUS: dict[type[Exception], int] = {
    MalformedPayment: 400,
    NotForSale: 404,
    NoSuchPayment: 404,
    NotSellingNow: 409,
    PayloadConflict: 409,
    SagaEnded: 500,
    CallFailed: 502,
    PaymentsUnavailable: 503,
}


@contextmanager
def answered_as_http() -> Iterator[None]:
    """Turn a refusal raised inside into the HTTPException of its status."""
    try:
        yield
    except tuple(STATUS) as refused:
        status = next(STATUS[kind] for kind in type(refused).__mro__ if kind in STATUS)
        raise HTTPException(status, str(refused)) from None
