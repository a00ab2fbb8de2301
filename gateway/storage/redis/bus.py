"""The Redis pub/sub `ChangeBus` of the scale-out backend.

Guarantees:

* `publish` delivers to this process's subscribers before it returns, exactly like
  `MemoryChangeBus` (each gets its own JSON round-tripped copy), so a change is in effect
  here whatever Redis's state; then it PUBLISHes `{topic, payload, origin}` on
  `<prefix>bus`. The listener drops its own echo (`origin`), so nothing is delivered twice.
  With `deliver_local=False` this process's subscribers never see its own notices.
* `publish` never raises because of Redis: the change is already committed in the database
  and other replicas see it within their cache age bound. An outage is logged once.
* The listener (`start()` / `close()`) reconnects by itself with capped, jittered backoff.
  It notices a dead connection by an error or by an unanswered PING (`ping_interval`).
* Pub/sub loses what is published while a subscriber is away. So on losing the connection
  the bus sets `connected = False`, calls `on_disconnect` and delivers `bus.disconnected`
  locally (consumers shrink their cache age bound); after re-subscribing it sets
  `connected = True`, calls `on_resync` and delivers `bus.resync` locally (consumers drop
  everything cached and restore their bound). A notice that cannot be parsed also triggers
  `bus.resync`: an unreadable notice invalidates everything, never nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import secrets
from collections.abc import Callable, Mapping
from typing import Any

from redis.asyncio.client import PubSub

from gateway.storage.ports import BUS_DISCONNECTED as BUS_DISCONNECTED
from gateway.storage.ports import BUS_RESYNC as BUS_RESYNC
from gateway.storage.ports import BusCallback
from gateway.storage.redis.client import REDIS_ERRORS, RedisHandle

log = logging.getLogger(__name__)

CHANNEL = "bus"

Hook = Callable[[], None]


class RedisChangeBus:
    """`ChangeBus` over Redis pub/sub for many replicas; see the module for guarantees."""

    def __init__(
        self,
        handle: RedisHandle,
        *,
        deliver_local: bool = True,
        on_disconnect: Hook | None = None,
        on_resync: Hook | None = None,
        ping_interval: float = 1.0,
        backoff: tuple[float, float] = (0.05, 2.0),
    ) -> None:
        self.origin = secrets.token_hex(8)
        self.connected = False
        self._handle = handle
        self._channel = handle.key(CHANNEL)
        self._deliver_local = deliver_local
        self._on_disconnect = on_disconnect
        self._on_resync = on_resync
        self._ping_interval = ping_interval
        self._backoff = backoff
        self._subscribers: list[BusCallback] = []
        self._task: asyncio.Task[None] | None = None
        self._first_attempt = asyncio.Event()
        self._up = asyncio.Event()
        self._outage = False  # a connection was lost (or never made): resync on the next one
        self._session_ok = False  # the current listening attempt got subscribed
        self._publish_failing = False

    async def start(self) -> None:
        """Starts the listener; returns after its first attempt to subscribe, whatever the
        outcome (on success, notices published from now on are received)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="redis-change-bus")
        await self._first_attempt.wait()

    async def close(self) -> None:
        """Stops the listener and releases its connection (the handle stays open)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.connected = False
        self._up.clear()

    async def wait_connected(self) -> None:
        """Returns once the listener is subscribed (at once if it already is)."""
        await self._up.wait()

    def subscribe(self, callback: BusCallback) -> Callable[[], None]:
        """Adds `callback`; the returned function removes it again (idempotent)."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    async def publish(self, topic: str, payload: Mapping[str, Any]) -> None:
        """Delivers locally, then to the other replicas; never raises for a Redis outage."""
        body = json.dumps(dict(payload), separators=(",", ":"))
        if self._deliver_local:
            await self._dispatch(topic, body)
        message = json.dumps(
            {"topic": topic, "payload": json.loads(body), "origin": self.origin},
            separators=(",", ":"),
        )
        try:
            await self._handle.client.publish(self._channel, message)
        except REDIS_ERRORS as exc:
            if not self._publish_failing:
                self._publish_failing = True
                log.warning(
                    "change-bus publish failed (%s); other replicas rely on cache age",
                    type(exc).__name__, extra={"action": topic},
                )  # fmt: skip
            return
        self._publish_failing = False

    async def _dispatch(self, topic: str, body: str) -> None:
        """Runs every subscriber in order on its own copy; a failure does not stop others."""
        for callback in list(self._subscribers):
            try:
                await callback(topic, json.loads(body))
            except Exception:
                log.exception("change-bus subscriber failed", extra={"action": topic})

    async def _receive(self, data: bytes | str) -> None:
        """Handles one message from the channel."""
        try:
            message = json.loads(data)
            topic, payload, origin = message["topic"], message["payload"], message["origin"]
            if not (isinstance(topic, str) and isinstance(payload, dict)):
                raise TypeError("bad shape")
        except (ValueError, KeyError, TypeError):
            # SECURITY: an unreadable notice may have been a revocation: drop all caches.
            log.warning("unreadable change-bus message; resyncing", extra={"action": "bus"})
            await self._dispatch(BUS_RESYNC, "{}")
            return
        if origin == self.origin:
            return  # delivered locally by publish (or deliberately not, per deliver_local)
        await self._dispatch(topic, json.dumps(payload))

    async def _run(self) -> None:
        """Listens forever: one connection at a time, backing off between attempts."""
        delay = self._backoff[0]
        while True:
            self._session_ok = False
            try:
                await self._listen()
            except REDIS_ERRORS as exc:
                await self._lost(exc)
            except Exception as exc:  # a bug must not silence the bus for good
                log.exception("change-bus listener failed", extra={"action": "bus"})
                await self._lost(exc)
            if self._session_ok:  # the connection worked for a while: start over quickly
                delay = self._backoff[0]
            self._first_attempt.set()
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311 - jitter
            delay = min(delay * 2, self._backoff[1])

    async def _listen(self) -> None:
        """Subscribes, reports the connection, then pumps messages until it fails."""
        pubsub = self._handle.client.pubsub()
        try:
            await pubsub.subscribe(self._channel)
            await self._confirmed(pubsub)
            await self._established()
            await self._pump(pubsub)
        finally:
            with contextlib.suppress(*REDIS_ERRORS):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _confirmed(self, pubsub: PubSub) -> None:
        """Waits for Redis to confirm the subscription (only then are notices received)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 2 * self._ping_interval
        while (left := deadline - loop.time()) > 0:
            reply = await pubsub.get_message(timeout=left)
            if reply is not None and reply["type"] == "subscribe":
                return
        raise TimeoutError("change-bus subscription was not confirmed")

    async def _pump(self, pubsub: PubSub) -> None:
        """Delivers messages; PINGs when idle and gives up when a PING goes unanswered."""
        loop = asyncio.get_running_loop()
        heard, pinged = loop.time(), False
        while True:
            reply = await pubsub.get_message(timeout=self._ping_interval)
            now = loop.time()
            if reply is not None:
                if reply["type"] == "message":
                    await self._receive(reply["data"])
                heard, pinged = loop.time(), False  # after the callbacks, however slow
            elif now - heard > 2.5 * self._ping_interval:
                raise TimeoutError("change-bus connection stopped answering")
            elif not pinged and now - heard >= self._ping_interval:
                await pubsub.ping()
                pinged = True

    async def _established(self) -> None:
        """Marks the bus connected; after an outage, asks consumers to resync."""
        self.connected = self._session_ok = True
        self._up.set()
        self._first_attempt.set()
        self._publish_failing = False
        if not self._outage:
            return
        self._outage = False
        log.info("change bus reconnected; resyncing", extra={"action": BUS_RESYNC})
        self._call(self._on_resync, BUS_RESYNC)
        await self._dispatch(BUS_RESYNC, "{}")

    async def _lost(self, exc: BaseException) -> None:
        """Marks the bus disconnected; the first failure of an outage tells consumers."""
        was_connected = self.connected
        self.connected = False
        self._up.clear()
        if self._outage and not was_connected:
            return  # still the same outage
        self._outage = True
        log.warning(
            "change bus disconnected (%s); retrying", type(exc).__name__,
            extra={"action": BUS_DISCONNECTED},
        )  # fmt: skip
        self._call(self._on_disconnect, BUS_DISCONNECTED)
        await self._dispatch(BUS_DISCONNECTED, "{}")

    @staticmethod
    def _call(hook: Hook | None, action: str) -> None:
        if hook is None:
            return
        try:
            hook()
        except Exception:
            log.exception("change-bus hook failed", extra={"action": action})
