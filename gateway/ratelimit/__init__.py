"""Rate limiting: GCRA buckets in-process or in Redis, configured rules, auth throttles.

`build_store` gives the store for a deployment; `RateLimiter` (proxied requests, used by the
`EnforceRateLimit` stage) and `AuthLimiter` (credential endpoints) charge it.
"""
