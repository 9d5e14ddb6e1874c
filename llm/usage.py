"""Token and cost accounting over ChatResults, per stage."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

from llm.settings import LLMSettings
from llm.types import ChatResult


@dataclass
class Usage:
    """Running totals for one stage (or all of them)."""

    calls: int = 0
    failed: int = 0
    truncated: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usage_unknown: int = 0  # answered calls whose server did not say how many tokens they took

    def add(self, result: ChatResult) -> None:
        self.calls += 1
        self.failed += result.error is not None
        self.truncated += result.truncated
        if result.error is None and (result.prompt_tokens is None or result.completion_tokens is None):
            self.usage_unknown += 1
        self.prompt_tokens += result.prompt_tokens or 0
        self.completion_tokens += result.completion_tokens or 0

    def cost_usd(self, settings: LLMSettings | None) -> float | str | None:
        """Cost at the configured prices; None when no price is configured, and "unknown" when
        a call's tokens are (its tokens counted as 0 would understate it)."""
        if settings is None or (
            settings.price_per_1k_prompt is None and settings.price_per_1k_completion is None
        ):
            return None
        if self.usage_unknown:
            return "unknown"
        return (
            self.prompt_tokens / 1000.0 * (settings.price_per_1k_prompt or 0.0)
            + self.completion_tokens / 1000.0 * (settings.price_per_1k_completion or 0.0)
        )

    def as_dict(self, settings: LLMSettings | None) -> dict:
        return {**asdict(self), "cost_usd": self.cost_usd(settings)}


def summarize_usage(results: Iterable[ChatResult], settings: LLMSettings | None = None) -> dict:
    """``{"total": {...}, "by_stage": {stage: {...}}}`` with calls, failed, truncated, tokens, cost."""
    total = Usage()
    by_stage: dict[str, Usage] = {}
    for result in results:
        total.add(result)
        by_stage.setdefault(result.stage, Usage()).add(result)
    return {
        "total": total.as_dict(settings),
        "by_stage": {stage: usage.as_dict(settings) for stage, usage in sorted(by_stage.items())},
    }
