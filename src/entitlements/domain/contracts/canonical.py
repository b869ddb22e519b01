"""What gets hashed, exactly — so that anyone can recompute it in another language.

- The **body** is canonicalised by normalising line endings (``\\r\\n`` and ``\\r`` become
  ``\\n``) and then Unicode NFC; nothing else changes (trailing spaces and the final
  newline are kept). ``body_hash`` is the SHA-256 of its UTF-8 bytes, in lowercase hex.
- The **terms** (plan, term, amount as a decimal string, currency, signers) are a JSON
  object canonicalised per RFC 8785 (JCS); ``terms_hash`` is the SHA-256 of those bytes.
  Signers' names and emails enter only as commitments (see `commit`).
- The **content hash** is the SHA-256 of the RFC 8785 form of
  ``{"body_hash": ..., "terms_hash": ...}``: a signature binds to it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import unicodedata
from typing import Any

import rfc8785

__all__ = ["canonical_body", "canonical_json", "commit", "content_hash", "sha256_hex"]


def canonical_body(text: str) -> str:
    return unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_SAFE = 2**53 - 1


def _plain(value: Any) -> bool:
    """Whether ``value`` holds only what RFC 8785 writes as the standard library's JSON
    does (sorted, compact, unescaped UTF-8): strings, safe integers, booleans, null,
    arrays, and objects keyed by strings of the Basic Multilingual Plane (where sorting
    by code point is sorting by UTF-16 unit). Floats and larger integers are not."""
    kind = type(value)
    if kind is dict:
        return all(_plain_key(key) and _plain(item) for key, item in value.items())
    if kind is list or kind is tuple:
        return all(_plain(item) for item in value)
    if kind is int:
        return bool(-_SAFE <= value <= _SAFE)
    return kind is str or kind is bool or value is None


def _plain_key(key: Any) -> bool:
    return type(key) is str and (key.isascii() or max(key, default="") <= "\uffff")


def canonical_json(document: Any) -> bytes:
    """RFC 8785 (JSON Canonicalization Scheme) bytes of a JSON document. Documents of
    strings and integers (invoices, contract terms) take the standard library's encoder,
    a tenth of the cost; anything else the RFC 8785 implementation."""
    if _plain(document):
        text = json.dumps(document, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: let the full implementation refuse it
            pass
    encoded: bytes = rfc8785.dumps(document)
    return encoded


def content_hash(body_hash: str, terms_hash: str) -> str:
    return sha256_hex(canonical_json({"body_hash": body_hash, "terms_hash": terms_hash}))


def commit(value: str, salt: bytes) -> str:
    """A commitment to a piece of personal data: HMAC-SHA256 keyed with a random 32-byte
    salt, hex. The hash chain covers the commitment; the clear value and its salt are
    stored beside it and can be erased without breaking verification (without the salt,
    the commitment reveals nothing about a guessable value such as an email)."""
    return hmac.new(salt, value.encode("utf-8"), hashlib.sha256).hexdigest()
