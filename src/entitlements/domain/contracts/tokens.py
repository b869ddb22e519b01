"""Signing tokens: handed out once, stored only as a hash.

Tokens come from `secrets.token_urlsafe(32)` (256 bits). Only their SHA-256 is stored: a
keyed HMAC would add nothing here, because a 256-bit random token cannot be guessed or
brute-forced from its hash (a key protects low-entropy secrets such as passwords), and an
unkeyed hash keeps lookups independent of a key the host would have to keep and rotate.
Comparisons are constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

__all__ = ["TOKEN_BYTES", "hash_token", "new_token", "token_matches"]

TOKEN_BYTES = 32


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_matches(token: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_token(token), stored_hash)
