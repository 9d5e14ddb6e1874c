"""Errors a user can fix: printed as one line by the CLI, never as a traceback."""


class UserError(Exception):
    """Bad input or configuration; the message says what to fix."""


class RowsLeftToRetry(Exception):
    """The build finished everything it could, but some rows' LLM calls still failed on
    transient errors (429, 5xx, timeouts, connection errors) after all their retries. Those
    rows have a ``retry`` outcome and are pending again: the next run sends their calls again.
    Everything else is written and exported; ``summary`` is the run's summary."""

    def __init__(self, rows: int, example: str, summary: dict | None = None) -> None:
        self.rows = rows
        self.example = example
        self.summary = summary or {}
        super().__init__(
            f"{rows} row(s) left to retry: their LLM calls failed after all retries (e.g. {example}); "
            "everything else is saved and exported, and the next run sends those calls again"
        )

    def __reduce__(self) -> tuple:
        return (type(self), (self.rows, self.example, self.summary))
