"""Prefect flows, the CLI and settings: the only place that knows the order of stages."""
