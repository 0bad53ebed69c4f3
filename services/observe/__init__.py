"""What every concord process tells its operators: Prometheus metrics, health and readiness
endpoints, and operator alerts to a webhook (docs/observability.md)."""
