"""Built-in limits of the credential endpoints: per IP, per account, and failure penalties.

Per IP (when `rate_limits.defaults` is on), keyed by endpoint *name*, so every path and
form of one endpoint (`/.gateway/auth/signin`, the hosted `/.gateway/login` form) shares one
budget:

| endpoint | burst | sustained |
| --- | --- | --- |
| `signin` | 10 | 1 per second |
| `signup` | 5 | 1 per 10 s |
| `mfa` | 10 | 1 per 2 s |
| `password-reset` | 5 | 1 per minute |

Per account (always on), shared by every credential endpoint: 20 attempts at once, then
1 per minute; and the failure penalty of `penalty.py` (from the 5th consecutive failure,
1 s, 2 s, 4 s … up to 15 min; forgotten an hour after the last failure; cleared by a
success). The account key is the SHA-256 of the normalized email, computed the same way
whether or not the account exists, so limits reveal nothing about existence.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from aiohttp import web

from gateway.config.sections import RateLimitsConfig
from gateway.identity.errors import InvalidInput
from gateway.identity.validation import normalize_email
from gateway.observability.decisions import AUTH_RATE_LIMITED
from gateway.proxy.clientip import rate_limit_key_ip
from gateway.ratelimit.gcra import RateResult, window_seconds
from gateway.ratelimit.headers import (
    PolicyResult,
    limited_headers,
    rate_headers,
    too_many_requests_response,
)
from gateway.ratelimit.penalty import PenaltyPolicy
from gateway.ratelimit.stores import RateCheck, RateLimitStore


@dataclass(frozen=True, slots=True)
class Limit:
    """`burst` at once, then `per_second`; `window` is the refill time in whole seconds."""

    per_second: float
    burst: int

    @property
    def window(self) -> int:
        return window_seconds(self.burst, self.per_second)


ENDPOINT_LIMITS: Mapping[str, Limit] = MappingProxyType(
    {
        "signin": Limit(1.0, 10),
        "signup": Limit(0.1, 5),
        "mfa": Limit(0.5, 10),
        "password-reset": Limit(1 / 60, 5),
    }
)
ACCOUNT_LIMIT = Limit(1 / 60, 20)
ACCOUNT_POLICY = "account"


def account_key(email: str, secret: bytes | None = None) -> str:
    """`auth/account:email=<SHA-256 prefix>` of the normalized email (or of its trimmed,
    lower-cased first 1024 characters when it is not a valid address); an HMAC-SHA-256
    under `secret` when one is given, so store readers cannot test email guesses."""
    try:
        normalized = normalize_email(email)
    except InvalidInput:
        normalized = email[:1024].strip().lower()
    data = normalized.encode("utf-8", "surrogatepass")
    # SECURITY: never the raw email in a store key; the same hash for known and unknown
    # accounts, so nothing here depends on whether the account exists.
    if secret is None:
        digest = hashlib.sha256(data).hexdigest()
    else:
        digest = hmac.new(secret, data, hashlib.sha256).hexdigest()
    return f"auth/account:email={digest[:32]}"


@dataclass(frozen=True, slots=True)
class AuthCheck:
    """The outcome of one credential attempt's limits."""

    results: tuple[PolicyResult, ...] = ()

    @property
    def allowed(self) -> bool:
        return all(p.result.allowed for p in self.results)

    @property
    def headers(self) -> list[tuple[str, str]]:
        """Headers for the response (with `Retry-After` when refused)."""
        return rate_headers(self.results) if self.allowed else limited_headers(self.results)

    def refusal(self) -> web.Response | None:
        """The 429 problem+json response when refused (counted in metrics), else None."""
        if self.allowed:
            return None
        AUTH_RATE_LIMITED.inc()
        return too_many_requests_response(self.results)


class AuthLimiter:
    """The credential endpoints' limits over one store (time is the store's clock)."""

    def __init__(
        self,
        store: RateLimitStore,
        *,
        endpoints: Mapping[str, Limit] | None = ENDPOINT_LIMITS,
        account: Limit | None = ACCOUNT_LIMIT,
        penalty: PenaltyPolicy | None = None,
        key_secret: bytes | None = None,
    ) -> None:
        """`endpoints=None` turns the per-IP limits off and `account=None` the per-account
        attempt budget; the failure penalty (growing delays) is always on.
        `key_secret` (optional) keys the account hashes (see `account_key`)."""
        self.store = store
        self._secret = key_secret
        self.endpoints: Mapping[str, Limit] = endpoints or {}
        self.account = account or ACCOUNT_LIMIT
        self.account_budget = account is not None
        self.penalty = penalty or PenaltyPolicy()

    @classmethod
    def from_config(
        cls, limits: RateLimitsConfig, store: RateLimitStore, key_secret: bytes | None = None
    ) -> AuthLimiter:
        """Per-IP limits and the per-account attempt budget only when `rate_limits.defaults`
        is true; the failure penalty always applies (the contract requires it)."""
        if limits.defaults:
            return cls(store, key_secret=key_secret)
        return cls(store, endpoints=None, account=None, key_secret=key_secret)

    async def check(self, endpoint: str, client_ip: str, email: str | None = None) -> AuthCheck:
        """Charge one attempt at `endpoint` from `client_ip` (and for `email`, if given).

        Refused without charging anything while the account is in a failure penalty;
        otherwise the IP and account budgets are charged together, all or nothing.
        """
        if email is not None:
            waiting = await self.check_account(email)
            if waiting is not None:
                return AuthCheck((waiting,))
        named: list[tuple[str, Limit, RateCheck]] = []
        limit = self.endpoints.get(endpoint)
        if limit is not None and client_ip:
            key = f"auth/{endpoint}:ip={rate_limit_key_ip(client_ip)}"
            named.append((endpoint, limit, RateCheck(key, limit.per_second, limit.burst)))
        if email is not None and self.account_budget:
            acct = self.account
            check = RateCheck(self._key(email), acct.per_second, acct.burst)
            named.append((ACCOUNT_POLICY, acct, check))
        results = await self.store.check_many([c for _, _, c in named])
        return AuthCheck(
            tuple(
                PolicyResult(name, lim.window, r)
                for (name, lim, _), r in zip(named, results, strict=True)
            )
        )

    async def check_account(self, email: str) -> PolicyResult | None:
        """None when `email` may try now; else the `account` policy's wait. Charges nothing."""
        wait = await self.store.penalty_wait(self._key(email), self.penalty)
        if wait <= 0:
            return None
        result = RateResult(False, self.account.burst, 0, wait, wait)
        return PolicyResult(ACCOUNT_POLICY, self.account.window, result)

    async def record_failure(self, email: str) -> float:
        """Count a failed attempt (for any email, existing or not); the next one's wait."""
        return await self.store.add_failure(self._key(email), self.penalty)

    async def record_success(self, email: str) -> None:
        """A successful attempt clears the account's failures."""
        await self.store.clear_failures(self._key(email))

    def _key(self, email: str) -> str:
        return account_key(email, self._secret)
