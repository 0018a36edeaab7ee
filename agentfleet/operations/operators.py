"""Who may steer the fleet from Telegram, and what each role may do.

``FLEET_TELEGRAM_USERS`` is an allow-list of Telegram user ids with a role and the name their
content decisions carry (``111:admin:alice,222:viewer``). Anyone else is refused politely.
Roles are sets of permissions, not a ladder: an approver decides content but does not pause bots,
an operator configures bots but not their money or URL settings (only an admin does).
"""

from __future__ import annotations

import re
from enum import StrEnum

from pydantic import BaseModel

from agentfleet.errors import FleetError

SANDBOX_OPERATOR = "1001:admin:sandbox-admin"
"""The allow-list when none is set and the command center talks to the local sandbox (only
``fleet channel`` tooling can type there): one admin, so `fleet up` can be tried at once."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


class Permission(StrEnum):
    READ = "read"
    """Status, health, forecasts, performance, payments, balances, patterns, dashboards."""
    STEER = "steer"
    """Pause, resume, restart, configure and tune bots."""
    DECIDE = "decide"
    """Approve, reject and edit content awaiting approval."""
    MONEY_AND_URLS = "money-and-urls"
    """Configure what a bot charges and spends (prices, spending limits) and the URLs the fleet
    calls for it (a remote bot's url): see ``agentfleet.bots.model.guarded_params``."""


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    APPROVER = "approver"
    ADMIN = "admin"

    @property
    def permissions(self) -> frozenset[Permission]:
        return ROLE_PERMISSIONS[self]


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: frozenset({Permission.READ}),
    Role.OPERATOR: frozenset({Permission.READ, Permission.STEER}),
    Role.APPROVER: frozenset({Permission.READ, Permission.DECIDE}),
    Role.ADMIN: frozenset(Permission),
}


class Operator(BaseModel):
    """A person on the allow-list."""

    user_id: int
    role: Role
    name: str

    def may(self, permission: Permission) -> bool:
        return permission in self.role.permissions


def parse_access_list(spec: str) -> dict[int, Operator]:
    """``"111:admin:alice, 222:viewer"`` -> operators by user id; a one-line FleetError naming
    the first bad entry (unknown role, id not an integer, a user listed twice)."""
    operators: dict[int, Operator] = {}
    for raw in spec.split(","):
        entry = raw.strip()
        if not entry:
            continue
        parts = [part.strip() for part in entry.split(":")]
        if len(parts) not in (2, 3) or not parts[0].lstrip("-").isdigit():
            raise FleetError(
                f"FLEET_TELEGRAM_USERS entry {entry!r} is not USER_ID:ROLE[:NAME] "
                "(e.g. 123456789:operator:alice)"
            )
        user_id = int(parts[0])
        try:
            role = Role(parts[1].lower())
        except ValueError:
            raise FleetError(
                f"FLEET_TELEGRAM_USERS entry {entry!r}: unknown role {parts[1]!r}; use one of "
                f"{', '.join(Role)}"
            ) from None
        name = parts[2] if len(parts) == 3 else f"tg-{user_id}"
        if not _NAME.match(name):
            raise FleetError(
                f"FLEET_TELEGRAM_USERS entry {entry!r}: name {name!r} must be letters, digits, "
                "'.', '_', '@' or '-'"
            )
        if user_id in operators:
            raise FleetError(f"FLEET_TELEGRAM_USERS lists user {user_id} twice")
        operators[user_id] = Operator(user_id=user_id, role=role, name=name)
    return operators
