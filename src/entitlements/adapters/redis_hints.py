"""A Redis pub/sub wake-up for hosts that already run Redis (extra ``redis``).

Every process publishes the feed position of each write it commits, after the commit;
every process's follower subscribes in its background thread and reads the change feed
as soon as a message arrives. The message is only a wake-up: what changed is always read
from the feed in the database, so a lost, late or duplicated message costs at most one
``max_staleness`` of delay, never a wrong answer. Worth it where the engine has no push
of its own (MariaDB/MySQL); PostgreSQL's NOTIFY and SQLite's ``data_version`` already
wake followers at push speed.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import attrs

from entitlements.errors import InvalidInput
from entitlements.extras import require

__all__ = ["DEFAULT_CHANNEL", "RedisChannel"]

log = logging.getLogger("entitlements.coherence")

DEFAULT_CHANNEL = "entitlements_changes"


def _redis() -> Any:
    return require("redis", "redis", "RedisChannel")


def _url(value: str) -> str:
    if not isinstance(value, str) or not value.startswith(("redis://", "rediss://", "unix://")):
        raise InvalidInput("redis", "must be a redis://, rediss:// or unix:// URL", value)
    return value


def _channel(value: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidInput("redis channel", "must be a non-empty string", value)
    return value


@attrs.define
class RedisChannel:
    """Where processes announce their commits: a Redis server and a channel (one per
    database the processes share)."""

    url: str = attrs.field(converter=_url)
    """The Redis server, as a ``redis://``, ``rediss://`` or ``unix://`` URL."""
    channel: str = attrs.field(default=DEFAULT_CHANNEL, converter=_channel)
    """The pub/sub channel; processes sharing a database share one."""
    _client: Any = attrs.field(default=None, init=False, repr=False, eq=False)
    _pid: int = attrs.field(default=0, init=False, repr=False, eq=False)
    _failing: bool = attrs.field(default=False, init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        _redis()  # fail at construction, not at the first write, without the extra

    def announce(self, revision: int) -> None:
        """Publish ``revision`` after a commit. Never raises: a write that committed has
        succeeded whatever Redis says; followers still poll."""
        redis = _redis()
        try:
            if self._client is None or self._pid != os.getpid():
                self._client = redis.Redis.from_url(
                    self.url, socket_timeout=1.0, socket_connect_timeout=1.0
                )
                self._pid = os.getpid()
            self._client.publish(self.channel, str(revision))
            if self._failing:
                self._failing = False
                log.warning("entitlements: publishing change hints to Redis works again")
        except redis.RedisError as error:
            if not self._failing:
                self._failing = True
                log.warning("entitlements: cannot publish a change hint to Redis: %s", error)

    def subscribe(self) -> RedisSubscription:
        """A subscription for one follower (it connects on first use)."""
        return RedisSubscription(self.url, self.channel)


class RedisSubscription:
    """One follower's subscription (`entitlements.service.coherence.ChangeHint`)."""

    def __init__(self, url: str, channel: str) -> None:
        self._redis = _redis()
        self._url, self._channel = url, channel
        self._client: Any = None
        self._pubsub: Any = None

    def wait(self, timeout: float) -> bool:
        """Raises while Redis cannot be reached (the listener then retries, and the
        follower polls meanwhile); a message that arrives right after a reconnect is
        read, one sent while disconnected is not — the poll covers it."""
        if self._pubsub is None:
            client = self._redis.Redis.from_url(self._url, socket_connect_timeout=1.0)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(self._channel)
            except self._redis.RedisError:
                pubsub.close()
                client.close()
                raise
            self._client, self._pubsub = client, pubsub
            return True  # messages may have been missed while disconnected
        try:
            message = self._pubsub.get_message(timeout=timeout)
        except self._redis.RedisError:
            self.close()
            raise
        return message is not None and message.get("type") == "message"

    def close(self) -> None:
        """Drop the connection (the next `wait` connects again)."""
        pubsub, client, self._pubsub, self._client = self._pubsub, self._client, None, None
        if pubsub is not None:
            pubsub.close()
        if client is not None:
            client.close()
