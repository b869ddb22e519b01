"""Reading staff forms into the library's types, refusing bad input in the library's words."""

from __future__ import annotations

from datetime import UTC, datetime, time

from starlette.datastructures import FormData

from entitlements.errors import InvalidInput

__all__ = ["Fields"]


class Fields:
    """A posted form, and who posted it from where (evidence some use cases record)."""

    def __init__(
        self, form: FormData, ip: str | None = None, user_agent: str | None = None
    ) -> None:
        self._form = form
        self.ip = ip
        self.user_agent = user_agent

    def text(self, name: str) -> str:
        value = self._form.get(name)
        return value.strip() if isinstance(value, str) else ""

    def optional(self, name: str) -> str | None:
        return self.text(name) or None

    def required(self, name: str, what: str) -> str:
        value = self.text(name)
        if not value:
            raise InvalidInput(name, what)
        return value

    def checked(self, name: str) -> bool:
        return self.text(name) in ("on", "yes", "true", "1")

    def whole(self, name: str, *, minimum: int = 0) -> int | None:
        value = self.text(name)
        if not value:
            return None
        try:
            number = int(value)
        except ValueError:
            raise InvalidInput(name, "must be a whole number", value) from None
        if number < minimum:
            raise InvalidInput(name, f"must be {minimum} or more", number)
        return number

    def date(self, name: str) -> datetime | None:
        """A calendar date (from ``<input type=date>``), as the end of that day in UTC."""
        value = self.text(name)
        if not value:
            return None
        try:
            day = datetime.strptime(value, "%Y-%m-%d").date()
        except ValueError:
            raise InvalidInput(name, "must be a date such as 2026-12-31", value) from None
        return datetime.combine(day, time(23, 59, 59), tzinfo=UTC)

    def day_start(self, name: str) -> datetime | None:
        """A calendar date as the start of that day in UTC (when a change takes effect)."""
        end = self.date(name)
        return None if end is None else datetime.combine(end.date(), time(0), tzinfo=UTC)

    def values(self) -> dict[str, str]:
        return {k: v for k, v in self._form.items() if isinstance(v, str) and k != "csrf_token"}
