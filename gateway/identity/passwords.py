"""Password policy and Argon2id password hashing.

Two independent pieces live here:

* :func:`check_password_policy` decides whether a new password may be set (length, common
  passwords, equality with the email). It is pure and synchronous.
* :class:`PasswordHasher` hashes and verifies passwords with Argon2id. Every Argon2 call runs in a
  bounded thread pool, never on the event loop, and at most ``max_concurrency`` jobs run at once.

Both apply Unicode NFKC normalization to the password first, so a password typed as composed or
decomposed characters (for example on different keyboards or operating systems) is the same
password, and the length limits apply to exactly what is hashed.

No function or exception here ever puts a password into a log record, an exception message or a
``repr``.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
import unicodedata
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from typing import Final, TypeVar

import argon2
from argon2.exceptions import VerificationError

__all__ = [
    "MAX_PASSWORD_LENGTH",
    "MIN_PASSWORD_LENGTH",
    "Argon2Params",
    "PasswordHasher",
    "PasswordPolicyError",
    "VerifyResult",
    "check_password_policy",
]

MIN_PASSWORD_LENGTH: Final = 10
"""Fewest Unicode code points (after NFKC) a new password may have."""

MAX_PASSWORD_LENGTH: Final = 1024
"""Most Unicode code points (after NFKC) a password may have; also bounds hashing work."""

# No canonical composition turns more than 4 code points into one (the longest canonical
# decompositions of composed characters, e.g. U+1F87, have 4), and compatibility mappings only
# expand. So a raw string longer than this is certainly too long after NFKC, and we can refuse it
# without normalizing an arbitrarily large input.
_RAW_LENGTH_LIMIT: Final = 4 * MAX_PASSWORD_LENGTH

_COMMON_PASSWORDS_RESOURCE: Final = "common_passwords.txt"

_T = TypeVar("_T")


class PasswordPolicyError(ValueError):
    """A password was refused by the policy.

    ``message`` is a complete, user-facing sentence suitable for a 422 response. It never
    contains the password.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _normalize(password: str) -> str | None:
    """Return the NFKC form of ``password``, or ``None`` if it is over the maximum length.

    Guarantees that no more than ``4 * MAX_PASSWORD_LENGTH`` code points are ever normalized.
    """
    # SECURITY: attacker-sized input; bound the work before normalizing or hashing it.
    if len(password) > _RAW_LENGTH_LIMIT:
        return None
    normalized = unicodedata.normalize("NFKC", password)
    if len(normalized) > MAX_PASSWORD_LENGTH:
        return None
    return normalized


def _fold(text: str) -> str:
    """Case-insensitive comparison key (NFKC, then Unicode case folding)."""
    return unicodedata.normalize("NFKC", text).casefold()


@functools.cache
def _common_passwords() -> frozenset[str]:
    """The shipped common-password list as case-folded entries, loaded once on first use."""
    text = (
        resources.files(__package__ or "gateway.identity")
        .joinpath(_COMMON_PASSWORDS_RESOURCE)
        .read_text(encoding="utf-8")
    )
    return frozenset(_fold(line.strip()) for line in text.splitlines() if line.strip())


def check_password_policy(password: str, *, email: str | None = None) -> None:
    """Refuse a password that may not be set as a user's new password.

    Guarantees, for the NFKC normalization of ``password`` counted in Unicode code points:

    * at least :data:`MIN_PASSWORD_LENGTH` and at most :data:`MAX_PASSWORD_LENGTH`;
    * not in the shipped common-password list (case-insensitive);
    * when ``email`` is given: equal neither to the email nor to its local part
      (case-insensitive).

    Raises:
        PasswordPolicyError: with a user-facing ``message`` naming the first rule broken. The
            message never contains the password.
    """
    normalized = _normalize(password)
    if normalized is None:
        raise PasswordPolicyError(f"password must be at most {MAX_PASSWORD_LENGTH} characters")
    if len(normalized) < MIN_PASSWORD_LENGTH:
        raise PasswordPolicyError(f"password must be at least {MIN_PASSWORD_LENGTH} characters")

    folded = normalized.casefold()
    if email is not None:
        email_folded = _fold(email.strip())
        local_part, at, _domain = email_folded.rpartition("@")
        # SECURITY: a password equal to the account name is the first guess in any attack.
        if folded == email_folded or (at and local_part and folded == local_part):
            raise PasswordPolicyError("password must not be the same as your email address")

    # SECURITY: credential stuffing and spraying try the well-known passwords first.
    if folded in _common_passwords():
        raise PasswordPolicyError(
            "password is too common and easy to guess; choose a different one"
        )


@dataclass(frozen=True)
class Argon2Params:
    """Argon2id cost parameters (memory in KiB).

    The defaults are the OWASP Password Storage Cheat Sheet minimum for Argon2id (19 MiB, two
    passes, one lane). They cost about 20 ms of one core per hash or verify on the target
    machine, against about 110-115 ms for argon2-cffi's own defaults (RFC 9106 low-memory
    profile: 64 MiB, t=3, p=4). On 2 cores that is roughly 95 sign-ins per second instead of
    about 18, which keeps a login flood from starving the proxy path while still meeting the
    OWASP minimum. Raise them (never lower them) as hardware allows; existing hashes are then
    reported as ``needs_rehash`` on the next successful sign-in.
    """

    time_cost: int = 2
    memory_cost: int = 19456
    parallelism: int = 1


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of :meth:`PasswordHasher.verify`.

    ``ok`` is True only if the password matches a well-formed stored hash. ``needs_rehash`` is
    True only when ``ok`` is True and the stored hash was made with other parameters than the
    hasher's current ones; the caller should then store a fresh :meth:`PasswordHasher.hash`.
    """

    ok: bool
    needs_rehash: bool


class PasswordHasher:
    """Argon2id hashing and verification off the event loop, with bounded concurrency.

    Guarantees:

    * every Argon2 computation (and password normalization) runs in a thread pool, never on the
      event loop thread;
    * at most ``max_concurrency`` jobs are submitted to the pool at any time; further callers
      wait on an :class:`asyncio.Semaphore`, so a flood of sign-ins queues
      instead of occupying every core. A job keeps its slot until the thread finishes, even if
      the awaiting task is cancelled;
    * :meth:`verify` and :meth:`verify_dummy` never raise for bad input, and do the same work for
      a wrong password as for an unknown user;
    * passwords never appear in exceptions, logs or ``repr``.

    Without ``executor`` the hasher creates a pool of ``max_concurrency`` threads and
    :meth:`close` shuts it down; a caller-supplied executor is used as is and left running. An
    instance must be used from a single event loop.
    """

    def __init__(
        self,
        params: Argon2Params = Argon2Params(),
        max_concurrency: int = 2,
        executor: ThreadPoolExecutor | None = None,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self._params = params
        self._argon2 = argon2.PasswordHasher(
            time_cost=params.time_cost,
            memory_cost=params.memory_cost,
            parallelism=params.parallelism,
            type=argon2.Type.ID,
        )
        self._owns_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(
            max_workers=max_concurrency, thread_name_prefix="argon2"
        )
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._max_concurrency = max_concurrency
        self._dummy_hash: str | None = None
        self._dummy_lock = asyncio.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(params={self._params!r}, "
            f"max_concurrency={self._max_concurrency})"
        )

    @property
    def params(self) -> Argon2Params:
        """The parameters new hashes are made with."""
        return self._params

    async def hash(self, password: str) -> str:
        """Return an encoded Argon2id hash (PHC string, random salt) of the NFKC ``password``.

        Does not apply the password policy; call :func:`check_password_policy` first.

        Raises:
            PasswordPolicyError: if the password is longer than :data:`MAX_PASSWORD_LENGTH`.
            RuntimeError: if the hasher is closed.
        """
        return await self._run(self._hash_sync, password)

    async def verify(self, stored_hash: str, password: str) -> VerifyResult:
        """Check ``password`` against ``stored_hash``.

        Never raises for a wrong password or a malformed, corrupt or non-Argon2 hash: those give
        ``VerifyResult(ok=False, needs_rehash=False)``.

        Raises:
            RuntimeError: if the hasher is closed.
        """
        return await self._run(self._verify_sync, stored_hash, password)

    async def verify_dummy(self, password: str) -> None:
        """Spend the same work as :meth:`verify` of a wrong password, and discard the result.

        Call it when the email is unknown, so that an unknown email and a wrong password take
        the same time. The dummy hash is made once, lazily, in the pool, with this hasher's
        parameters (the first call therefore also pays for one hash).

        Raises:
            RuntimeError: if the hasher is closed.
        """
        # SECURITY: user enumeration through response timing; do a real verify of equal cost.
        dummy_hash = await self._get_dummy_hash()
        await self._run(self._verify_sync, dummy_hash, password)

    async def close(self) -> None:
        """Refuse further work and, if this hasher created its executor, shut it down.

        Waits (off the event loop) for jobs already running to finish. Idempotent.
        """
        if self._closed:
            return
        self._closed = True
        if self._owns_executor:
            await asyncio.to_thread(self._executor.shutdown, True)

    async def _get_dummy_hash(self) -> str:
        if self._dummy_hash is None:
            async with self._dummy_lock:
                if self._dummy_hash is None:
                    self._dummy_hash = await self._run(self._hash_sync, secrets.token_urlsafe(32))
        return self._dummy_hash

    async def _run(self, fn: Callable[..., _T], *args: str) -> _T:
        """Run ``fn(*args)`` in the pool while holding one semaphore slot.

        The slot is released when the thread finishes, not when the caller stops waiting, so a
        cancelled caller cannot let more than ``max_concurrency`` jobs pile onto the pool.
        """
        if self._closed:
            raise RuntimeError("PasswordHasher is closed")
        await self._semaphore.acquire()
        try:
            loop = asyncio.get_running_loop()
            future = loop.run_in_executor(self._executor, fn, *args)
        except BaseException:
            self._semaphore.release()
            raise
        future.add_done_callback(lambda _f: self._semaphore.release())
        return await asyncio.shield(future)

    # The methods below run in pool threads.

    def _hash_sync(self, password: str) -> str:
        normalized = _normalize(password)
        if normalized is None:
            raise PasswordPolicyError(f"password must be at most {MAX_PASSWORD_LENGTH} characters")
        # "surrogatepass" makes every str encodable, so no UnicodeEncodeError carries the
        # password out in its ``object`` attribute.
        return self._argon2.hash(normalized.encode("utf-8", "surrogatepass"))

    def _verify_sync(self, stored_hash: str, password: str) -> VerifyResult:
        normalized = _normalize(password)
        if normalized is None:
            # hash() never accepts such a password, so it cannot match any stored hash.
            return VerifyResult(ok=False, needs_rehash=False)
        secret = normalized.encode("utf-8", "surrogatepass")
        try:
            self._argon2.verify(stored_hash, secret)
        # SECURITY: a corrupt or foreign stored hash must fail closed, not crash sign-in.
        except (VerificationError, ValueError):
            # VerifyMismatchError and VerificationError are VerificationErrors; InvalidHashError
            # and a non-ASCII hash's UnicodeEncodeError are ValueErrors.
            return VerifyResult(ok=False, needs_rehash=False)
        try:
            needs_rehash = self._argon2.check_needs_rehash(stored_hash)
        except ValueError:
            # Accepted by the C verifier but not by argon2-cffi's parser: store a fresh hash.
            needs_rehash = True
        return VerifyResult(ok=True, needs_rehash=needs_rehash)
