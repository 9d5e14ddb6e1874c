"""Prompt templates, their rendering, and parsing of what the LLM answered (stdlib only)."""

from prompts.answers import ANSWER_PARSER_VERSION, Extracted, check_input_keys, extract_answer
from prompts.render import (
    VERDICTS,
    assemble_multiturn,
    render_feedback,
    render_prediction,
    render_revision,
    render_transform,
    template_digest,
)
from prompts.transform_parse import (
    TRANSFORM_PARSER_VERSION,
    ParsedFunction,
    TransformRejected,
    parse_transform,
)

__all__ = [
    "ANSWER_PARSER_VERSION",
    "TRANSFORM_PARSER_VERSION",
    "VERDICTS",
    "Extracted",
    "ParsedFunction",
    "TransformRejected",
    "assemble_multiturn",
    "check_input_keys",
    "extract_answer",
    "parse_transform",
    "render_feedback",
    "render_prediction",
    "render_revision",
    "render_transform",
    "template_digest",
]
