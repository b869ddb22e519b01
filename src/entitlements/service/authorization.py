"""Who may change what. The library asks an `Authorizer` before every mutation; the host
supplies one that knows its roles, or uses a shipped rule set."""

from __future__ import annotations

from typing import Any, Protocol

from entitlements.domain.actor import Actor
from entitlements.domain.owner import Owner

__all__ = ["AllowAll", "Authorizer"]


class Authorizer(Protocol):
    def authorize(
        self, actor: Actor, action: str, *, owner: Owner | None, subject: Any, uow: Any
    ) -> None:
        """Return if ``actor`` may perform ``action`` (``"subscription.cancel"``...) on
        ``owner``'s ``subject``; raise `NotAuthorized` otherwise. ``uow`` gives read access
        to stored state for rules that need it."""
        ...


class AllowAll:
    """For hosts that authorise before calling the library (and for quick starts)."""

    def authorize(
        self, actor: Actor, action: str, *, owner: Owner | None, subject: Any, uow: Any
    ) -> None:
        return None
