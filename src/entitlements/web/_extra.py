"""Imported first by ``entitlements.web``: without the ``web`` extra, the error is the
``pip install`` line to type rather than a bare ``No module named 'starlette'``."""

from entitlements.extras import require

for _module in ("starlette", "jinja2"):
    require(_module, "web", "entitlements.web")
