"""Run-stopping errors of the LLM client.

Row-level failures are data (``ChatResult.error``); these stop a run because no row can
succeed until a person changes something or the endpoint comes back, or because the person
stopped it.
"""

from __future__ import annotations


class ConfigError(Exception):
    """The endpoint refused the configuration (401/403/404): fix a setting, then re-run."""


class EndpointDown(Exception):
    """The endpoint answered only failures for ``max_consecutive_failures`` attempts in a row
    (and, unless nothing listens there, for ``endpoint_down_after_s`` seconds)."""

    def __init__(self, base_url: str, failures: int, last_error: str, seconds: float | None = None) -> None:
        self.base_url = base_url
        self.failures = failures
        self.last_error = last_error
        self.seconds = seconds
        during = "" if seconds is None else f" in {seconds:.0f} s"
        super().__init__(
            f"endpoint {base_url} failed {failures} consecutive attempts{during}; last error: {last_error}"
        )

    def __reduce__(self) -> tuple:
        # Shard tasks may run on other machines: the error must survive pickling.
        return (type(self), (self.base_url, self.failures, self.last_error, self.seconds))


class RunCancelled(Exception):
    """The build these calls belong to was interrupted: calls not sent yet are not sent, and
    those in flight are abandoned (the completed ones are in the ledger)."""
