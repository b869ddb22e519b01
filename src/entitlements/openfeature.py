"""An OpenFeature provider, so hosts that evaluate flags through OpenFeature read
entitlements through it (install the ``openfeature`` extra).

The targeting key is the owner, written as `str(Owner)`: ``"organization:acme"`` or
``"tenant-a/app:42"``. A boolean flag ``"export"`` asks ``allows(owner, "export")``;
``"export:create"`` asks for one action. An integer flag asks ``limit(owner, name)``.

Entitlements fail closed: an unknown feature resolves to ``False`` with reason
``unknown`` rather than to the caller's default (which might be ``True``). An unlimited
limit has no integer value: it resolves to the caller's default with the flag metadata
``unlimited=True``. Only the targeting key is read from the evaluation context; the
answer is the cached snapshot's, so this costs what OpenFeature's own machinery costs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from entitlements.extras import require

require("openfeature", "openfeature", "entitlements.openfeature")

from openfeature.evaluation_context import EvaluationContext  # noqa: E402
from openfeature.exception import ErrorCode  # noqa: E402
from openfeature.flag_evaluation import FlagResolutionDetails  # noqa: E402
from openfeature.hook import Hook  # noqa: E402
from openfeature.provider import AbstractProvider  # noqa: E402
from openfeature.provider.metadata import Metadata  # noqa: E402

from entitlements.domain.owner import Owner  # noqa: E402
from entitlements.domain.resolution import Decision  # noqa: E402
from entitlements.errors import EntitlementsError  # noqa: E402
from entitlements.service.entitlements import Entitlements  # noqa: E402

__all__ = ["EntitlementsProvider"]

_T = TypeVar("_T")


def _details(value: _T, decision: Decision, **metadata: Any) -> FlagResolutionDetails[_T]:
    """``value`` with the reason and the deciding layer of ``decision``, as OpenFeature
    reports them (the layer is the variant; the detail and ``metadata`` go with it)."""
    return FlagResolutionDetails(
        value,
        reason=decision.reason.value,
        variant=decision.source.value,
        flag_metadata={**metadata, "detail": decision.detail},
    )


def _type_mismatch(default: Any, kind: str) -> FlagResolutionDetails[Any]:
    return FlagResolutionDetails(
        default,
        error_code=ErrorCode.TYPE_MISMATCH,
        error_message=f"entitlements answer {kind} flags only as booleans (features) or integers (limits)",
        reason="ERROR",
    )


class EntitlementsProvider(AbstractProvider):
    def __init__(self, entitlements: Entitlements) -> None:
        self._ents = entitlements

    def get_metadata(self) -> Metadata:
        return Metadata(name="entitlements")

    def get_provider_hooks(self) -> list[Hook]:
        return []

    def _owner(self, context: EvaluationContext | None) -> Owner | None:
        key = context.targeting_key if context is not None else None
        return Owner.parse(key) if key else None

    def _resolve(
        self,
        default: _T,
        context: EvaluationContext | None,
        answer: Callable[[Owner], FlagResolutionDetails[_T]],
    ) -> FlagResolutionDetails[_T]:
        try:
            owner = self._owner(context)
        except EntitlementsError as exc:
            return FlagResolutionDetails(
                default,
                error_code=ErrorCode.INVALID_CONTEXT,
                error_message=str(exc),
                reason="ERROR",
            )
        if owner is None:
            return FlagResolutionDetails(
                default,
                error_code=ErrorCode.TARGETING_KEY_MISSING,
                error_message="the targeting key must name the owner, e.g. 'organization:acme'",
                reason="ERROR",
            )
        try:
            return answer(owner)
        except EntitlementsError as exc:
            return FlagResolutionDetails(
                default, error_code=ErrorCode.GENERAL, error_message=str(exc), reason="ERROR"
            )

    def resolve_boolean_details(
        self,
        flag_key: str,
        default_value: bool,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[bool]:
        feature, _, action = flag_key.partition(":")

        def answer(owner: Owner) -> FlagResolutionDetails[bool]:
            decision = self._ents.explain(owner, feature, action or None)
            return _details(decision.allowed, decision)

        return self._resolve(default_value, evaluation_context, answer)

    def resolve_integer_details(
        self, flag_key: str, default_value: int, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[int]:
        def answer(owner: Owner) -> FlagResolutionDetails[int]:
            decision = self._ents.explain_limit(owner, flag_key)
            if decision.value is None:
                return _details(default_value, decision, unlimited=True)
            return _details(int(decision.value), decision, unlimited=False)

        return self._resolve(default_value, evaluation_context, answer)

    def resolve_string_details(
        self, flag_key: str, default_value: str, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[str]:
        return _type_mismatch(default_value, "string")

    def resolve_float_details(
        self,
        flag_key: str,
        default_value: float,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[float]:
        return _type_mismatch(default_value, "float")

    def resolve_object_details(  # type: ignore[override]
        self,
        flag_key: str,
        default_value: Sequence[Any] | dict[str, Any],
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[Sequence[Any] | dict[str, Any]]:
        return _type_mismatch(default_value, "object")
