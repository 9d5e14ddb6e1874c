"""Helpers for nested configuration dictionaries."""

__all__ = ["flatten", "deep_get"]

SEPARATOR = "."


def flatten(config: dict[str, dict[str, int]], prefix: str = "") -> dict[str, int]:
    """Flatten a two-level config into dotted keys, e.g. {"db": {"port": 1}} -> {"db.port": 1}.

    >>> flatten({"db": {"port": 5432, "pool": 4}, "cache": {"ttl": 60}})
    {'cache.ttl': 60, 'db.pool': 4, 'db.port': 5432}
    """
    flat = {}
    for section, values in config.items():
        for key, value in values.items():
            flat[SEPARATOR.join(p for p in (prefix, section, key) if p)] = value
    return dict(sorted(flat.items()))


def deep_get(config, dotted_key, default=None):
    """Look up a dotted key in a nested dict."""
    node = config
    for part in dotted_key.split(SEPARATOR):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def describe_config(config):
    """Human-readable listing of a config (not part of the public API)."""
    return "\n".join(f"{k} = {v}" for k, v in flatten(config).items())
