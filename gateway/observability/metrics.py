"""Prometheus metrics, named `gateway_<component>_<thing>_<unit>`, served on the metrics
listener only. Labels never carry secrets, ids of users or raw paths (cardinality)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

POLICY_RELOADS = Counter(
    "gateway_policy_reloads_total",
    "Policy file reloads by result (ok: swapped in; error: the old snapshot was kept).",
    ["result"],
)
POLICY_VERSION = Gauge(
    "gateway_policy_version_info", "The version number of the policy snapshot in use."
)
