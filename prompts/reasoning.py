"""A reasoning model's thinking, apart from its answer.

DeepSeek-R1, QwQ, Qwen3 and their distills think inside ``<think>...</think>`` before they
answer. Served without a reasoning parser, the thinking is part of the response text, often
without the opening tag (their chat templates put ``<think>`` in the prompt); the LLM client
keeps a thinking the server returned apart (``reasoning_content``, ``reasoning``) in the same
shape. The thinking holds drafts (a first JSON answer, headings of a first rewrite) that are
not the answer, so the parsers read only what follows it.
"""

from __future__ import annotations

import re

_OPEN = re.compile(r"\s*<think>")
# The end of the thinking: a "</think>" not followed, on its line, by a quote, a backtick or JSON
# punctuation (those make it text quoted in an answer, such as {"output": "<think>a</think>"}).
_CLOSE = re.compile(r"</think>(?![^\S\n]*[\"'`\\,:}\]])")


def answer_part(text: str) -> str:
    """What follows the thinking: the text after the first ``</think>`` that ends it, without
    the blank lines that set it apart; "" when the text opens ``<think>`` and never closes it
    (the thinking ran to the end); the whole text when there is no thinking."""
    close = _CLOSE.search(text)
    if close is not None:
        return text[close.end():].lstrip()
    return "" if _OPEN.match(text) else text
