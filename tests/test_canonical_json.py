"""The canonical JSON a content hash covers: the fast encoding of plain documents is
byte for byte what RFC 8785 says."""

from __future__ import annotations

import rfc8785
from hypothesis import given
from hypothesis import strategies as st

from entitlements.domain.contracts.canonical import canonical_json

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**60), max_value=2**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
_documents = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def _reference(document: object) -> bytes | type[Exception]:
    try:
        return bytes(rfc8785.dumps(document))
    except Exception as error:
        return type(error)


def _ours(document: object) -> bytes | type[Exception]:
    try:
        return canonical_json(document)
    except Exception as error:
        return type(error)


@given(_documents)
def test_canonical_json_is_rfc_8785(document: object) -> None:
    assert _ours(document) == _reference(document)


def test_keys_sort_by_utf16_units_and_controls_escape_as_rfc_8785_says() -> None:
    document = {"\U0001f600": 1, "\uff61": 2, 'a\x00\x1f\x7f"\\\u2028': ["\t\n\r\b\f", -0]}
    assert canonical_json(document) == rfc8785.dumps(document)
