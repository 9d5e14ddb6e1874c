"""Working without an LLM: the AST transform, execution traces and narrated answers.

Import the pieces from their modules (``llm.offline.transform``, ``llm.offline.trace``,
``llm.offline.answers``, ``llm.offline.provider``); this package file stays light.
"""
