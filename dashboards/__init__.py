"""Grafana dashboards on ClickHouse: definitions, provisioning files, and ``ratewarden dashboards push``."""
