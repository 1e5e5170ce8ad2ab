"""Logs and metrics of a process: structlog lines and Prometheus families."""
