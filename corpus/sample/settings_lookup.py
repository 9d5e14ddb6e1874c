"""Application settings loaded once at import time."""

import json

with open("settings.json") as fh:
    SETTINGS = json.load(fh)

DEFAULTS = {"theme": "light", "language": "en"}


def get_setting(key: str) -> str:
    """Value of a setting, falling back to the built-in defaults."""
    return str(SETTINGS.get(key, DEFAULTS.get(key, "")))
