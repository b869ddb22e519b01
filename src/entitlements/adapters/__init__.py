"""Storage adapters: ``memory`` (dicts) and ``sql`` (SQLAlchemy 2.x)."""
