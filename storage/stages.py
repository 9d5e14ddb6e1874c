"""The pipeline's stages by name, in pipeline order: the names the store records rows under
(``ingest_log`` is ingest's, ``stage_outcomes.stage`` the others') and the order statistics
list them in. The built stages themselves are registered in ``tasks.registry``, in this order.
"""

from __future__ import annotations

STAGE_ORDER = ("ingest", "transform", "sample_io", "prompts", "answer", "revise1", "revise2")

# The stage whose attempts make each turn of a prediction task: answer, then the revisions.
TURN_STAGES = dict(enumerate(STAGE_ORDER[STAGE_ORDER.index("answer"):], start=1))
