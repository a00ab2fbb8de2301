"""Prometheus metrics, named `gateway_<component>_<thing>_<unit>`, served on the metrics
listener only (never on the main listener).

Labels never carry secrets, user or tenant ids, or raw paths: `route` is an upstream name or
a gateway endpoint template, `reason` is a `Reason` value, `operation` a store method name;
every label's values come from a closed, code-defined set (bounded cardinality). Gauges
declare a multiprocess mode so `--workers` aggregates them sensibly.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from gateway.observability.tally import counter_tally  # first: its flush collector leads

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
STORE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)

POLICY_RELOADS = Counter(
    "gateway_policy_reloads_total",
    "Policy file reloads by result (ok: swapped in; error: the old snapshot was kept).",
    ["result"],
)
POLICY_VERSION = Gauge(
    "gateway_policy_version_info",
    "The version number of the policy snapshot in use.",
    multiprocess_mode="max",
)

# --- requests (every listener-1 request: proxied and the gateway's own endpoints) --------------
HTTP_REQUESTS = Counter(
    "gateway_http_requests_total",
    "Requests answered, by route (upstream name or gateway endpoint) and status code.",
    ["route", "status"],
)
HTTP_DURATION = Histogram(
    "gateway_http_request_duration_seconds",
    "Time from receiving a request to the end of its response, by route and status class.",
    ["route", "status_class"],
    buckets=LATENCY_BUCKETS,
)
FRONT_HANDOFFS = Counter(
    "gateway_front_handoffs_total",
    "Connections the fast front handed to the full HTTP server, by the reason of the first "
    "request it could not answer itself (gateway endpoint, body, upgrade, ...).",
    ["reason"],
)

# --- authorization and rate limits ------------------------------------------------------------
AUTHZ_DECISIONS = Counter(
    "gateway_authz_decisions_total",
    "Proxied requests by the gateway's decision: result allow|deny, reason a denial reason "
    "(or public|policy for allows).",
    ["result", "reason"],
)
RATE_LIMITED = Counter(
    "gateway_ratelimit_limited_requests_total",
    "Requests refused with 429, by where the limit applied (proxy or auth endpoints).",
    ["scope"],
)

# --- identity and sessions (counted from the audit events the stores commit) ------------------
SIGNUPS = Counter("gateway_identity_signups_total", "Completed sign-ups (new user accounts).")
SIGNIN_FAILURES = Counter(
    "gateway_identity_signin_failures_total",
    "Failed sign-ins, by reason (as audited).",
    ["reason"],
)
SESSION_REVOCATIONS = Counter(
    "gateway_sessions_revocations_total",
    "Sessions revoked, by kind (signout, revoke, revoke_user, revoke_tenant).",
    ["kind"],
)

# --- stores --------------------------------------------------------------------------------------
STORE_DURATION = Histogram(
    "gateway_store_operation_duration_seconds",
    "Store call latency by port (identity, sessions, rules), backend and operation.",
    ["port", "backend", "operation"],
    buckets=STORE_BUCKETS,
)
STORE_ERRORS = Counter(
    "gateway_store_errors_total",
    "Store calls that failed with StoreUnavailable, by port, backend and operation.",
    ["port", "backend", "operation"],
)

# --- upstreams -----------------------------------------------------------------------------------
UPSTREAM_DURATION = Histogram(
    "gateway_upstream_response_duration_seconds",
    "Time from sending a request upstream to its response headers, by route.",
    ["route"],
    buckets=LATENCY_BUCKETS,
)
UPSTREAM_ERRORS = Counter(
    "gateway_upstream_errors_total",
    "Upstream failures by route and kind (unreachable, timeout, truncated).",
    ["route", "kind"],
)


# --- caches and the change bus ------------------------------------------------------------------
CACHE_LOOKUPS = Counter(
    "gateway_cache_lookups_total",
    "Cache lookups by cache (session, directory, decision) and result (hit, miss); "
    "hit ratio = hit / (hit + miss).",
    ["cache", "result"],
)
BUS_CONNECTED = Gauge(
    "gateway_changebus_connected_state",
    "1 while the change bus delivers notices (always 1 for the in-process bus), else 0.",
    ["backend"],
    multiprocess_mode="livemin",
)
BUS_EVENTS = Counter(
    "gateway_changebus_transitions_total",
    "Change-bus state changes by event (disconnected, resync).",
    ["event"],
)


class CacheCounter:
    """Hit and miss counters of one cache. Hits (several per proxied request) are tallied
    (`gateway.observability.tally`: exact at every scrape of this process); misses are
    counted at once."""

    __slots__ = ("_miss", "hit")

    def __init__(self, cache: str) -> None:
        self.hit = counter_tally(CACHE_LOOKUPS.labels(cache=cache, result="hit")).inc
        """Counts one lookup answered from the cache."""
        self._miss = CACHE_LOOKUPS.labels(cache=cache, result="miss")

    def miss(self) -> None:
        """Counts one lookup that had to go to the source."""
        self._miss.inc()


SESSION_CACHE = CacheCounter("session")
DIRECTORY_CACHE = CacheCounter("directory")
DECISION_CACHE = CacheCounter("decision")
