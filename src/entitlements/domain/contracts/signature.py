"""What a signature may be: a typed name, or a drawing (PNG or JPEG, size-limited)."""

from __future__ import annotations

from entitlements.errors import InvalidInput

__all__ = ["MAX_DRAWING_BYTES", "drawing_type"]

MAX_DRAWING_BYTES = 512 * 1024
_MAGIC = {b"\x89PNG\r\n\x1a\n": "image/png", b"\xff\xd8\xff": "image/jpeg"}


def drawing_type(image: bytes) -> str:
    """The image's content type, from its first bytes; anything else is refused."""
    if not isinstance(image, bytes | bytearray) or not image:
        raise InvalidInput("drawing", "must be the image's bytes", None)
    if len(image) > MAX_DRAWING_BYTES:
        raise InvalidInput(
            "drawing",
            f"must be at most {MAX_DRAWING_BYTES // 1024} KiB, got {len(image) // 1024} KiB",
        )
    for magic, content_type in _MAGIC.items():
        if bytes(image[: len(magic)]) == magic:
            return content_type
    raise InvalidInput("drawing", "must be a PNG or JPEG image")
