"""responder's own Prometheus metrics, on a registry the daemon owns (tests get a fresh one)."""

from __future__ import annotations

import platform

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
)

from responder import __version__

# Counters' *_created series double the series count and no dashboard reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]


class Metrics:
    """Every metric responder exports, registered on one registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)
        self.build_info = Gauge("responder_build_info", "Always 1; the labels say which build"
                                " runs", ["version", "python"], registry=r)
        self.build_info.labels(__version__, platform.python_version()).set(1)
        self.requests = Counter("responder_http_requests", "HTTP requests by route and status",
                                ["route", "code"], registry=r)
        self.connections_refused = Counter("responder_http_connections_refused",
                                           "Connections answered 503 and closed: over"
                                           " RESPONDER_HTTP_MAX_CONNECTIONS", registry=r)
        self.rejected = Counter("responder_intake_rejected",
                                "Webhook requests refused, by reason", ["source", "reason"],
                                registry=r)
        self.alerts = Counter("responder_alerts_received", "Alerts newly recorded",
                              ["source", "status"], registry=r)
        self.redeliveries = Counter("responder_alert_redeliveries",
                                    "Alerts received again (repeat, retry, HA twin); no action",
                                    ["source"], registry=r)
        self.truncated = Counter("responder_truncated_payloads",
                                 "Payloads with truncatedAlerts > 0: scope unknown",
                                 ["source"], registry=r)
        self.intake_seconds = Histogram(
            "responder_intake_seconds", "Webhook receipt to durable record",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r)
        self.actions = Counter("responder_actions", "Containment step outcomes",
                               ["control", "outcome"], registry=r)
        self.admin_seconds = Histogram(
            "responder_admin_call_seconds", "Admin API call latency, per attempt",
            ["target"], registry=r)
        self.key_rejected = Counter("responder_key_rejected",
                                    "Label values refused by a control's key pattern",
                                    ["rule", "control"], registry=r)
        self.containment_failed = Counter("responder_containment_failed",
                                          "Steps whose escalation failed too", ["rule"],
                                          registry=r)
        self.steps_inflight = Gauge("responder_steps_inflight", "Steps being executed",
                                    registry=r)
        self.write_backlog = Gauge("responder_write_backlog", "Units waiting for group commit",
                                   registry=r)
        self.rules_loaded = Gauge("responder_rules_loaded", "Rules in force", registry=r)
        self.rules_reloads = Counter("responder_rules_reloads", "Rule table reloads by outcome",
                                     ["outcome"], registry=r)
        self.rules_reload_ok = Gauge("responder_rules_last_reload_ok",
                                     "0 after a refused reload (the last good table stays)",
                                     registry=r)
        self.matches = Counter("responder_rule_matches", "Alerts matched, by rule and what the"
                               " match asked for (contain, notify, resolve)", ["rule", "action"],
                               registry=r)
        self.unmatched = Counter("responder_alerts_unmatched",
                                 "Firing alerts no rule matched, by alertname and whether"
                                 " they look like a SEV1", ["alertname", "sev1_like"],
                                 registry=r)
        self.unmatched_names: set[str] = set()  # alertname values seen, to bound the labels
        self.ready = Gauge("responder_ready", "1 when /readyz would answer 200 (store reachable,"
                           " rules loaded, not draining); set at each scrape", registry=r)
        self.contained = Gauge("responder_controls_contained",
                               "Keys held above their lowest level, per control; set at each"
                               " scrape", ["control"], registry=r)
        self.drift = Counter("responder_drift", "Held levels found lower on the target",
                             ["control", "outcome"], registry=r)
        self.reconcile_seconds = Gauge("responder_reconcile_pass_seconds",
                                       "Duration of the last reconcile pass", registry=r)
        self.reconcile_keys = Gauge("responder_reconcile_keys",
                                    "Held keys read back in the last pass", registry=r)
        self.deliveries = Counter("responder_deliveries", "Outbox deliveries by sink and outcome",
                                  ["sink", "outcome"], registry=r)
        self.outbox_backlog = Gauge("responder_outbox_backlog", "Undelivered outbox rows",
                                    ["sink"], registry=r)
        self.outbox_dead = Gauge("responder_outbox_dead",
                                 "Outbox rows given up on, waiting for `responder outbox retry`",
                                 ["sink"], registry=r)
        self.kafka_lag = Gauge("responder_kafka_lag", "Messages behind on the alerts topic",
                               ["partition"], registry=r)
        self.kafka_metrics_lag = Gauge("responder_kafka_metrics_lag",
                                       "Messages behind on the metrics topic", ["partition"],
                                       registry=r)
        self.kafka_stalled = Gauge("responder_kafka_stalled",
                                   "1 while a consumer cannot commit for a reason that is not"
                                   " a message (store down, a bug): it pauses and retries",
                                   ["topic"], registry=r)
        self.metric_samples = Counter("responder_metric_samples",
                                      "Metric samples by outcome (evaluated, ignored: no rule"
                                      " watches the metric, out_of_order, series_limit, future)",
                                      ["outcome"], registry=r)
        self.metric_series = Gauge("responder_metric_series", "Live series under evaluation",
                                   registry=r)
        self.metric_series_forgotten = Counter("responder_metric_series_forgotten",
                                               "Series forgotten after going stale", registry=r)
        self.draining = Gauge("responder_draining", "1 while shutting down", registry=r)
        # Replicas (HA): takeovers of expired step leases, and which leader-only loops run here.
        self.step_takeovers = Counter("responder_step_takeovers",
                                      "Steps taken over after another replica's lease ran out",
                                      registry=r)
        self.leader = Gauge("responder_leader", "1 while this replica runs a leader-only loop",
                            ["role"], registry=r)
        self.task_failures = Counter("responder_background_task_failures",
                                     "Background tasks (intake, executor sweep, sealer, ...)"
                                     " that ended with an error", ["task"], registry=r)
