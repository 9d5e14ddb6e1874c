"""The ordered list of built stages and their config keys.

A stage's key hashes its name, version, the settings that change its output, the prompt
templates it renders and the key of the stage it reads from, so a changed setting or template
re-does exactly the work downstream of it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from prompts.render import template_digest
from storage.ids import content_id
from storage.stages import TURN_STAGES
from tasks.answer import ANSWER, REVISE1, REVISE2
from tasks.build_prompts import PROMPTS
from tasks.sample_io import SAMPLE_IO
from tasks.stage import Stage
from tasks.transform import TRANSFORM

if TYPE_CHECKING:
    from flows.config import BuildConfig

INGEST_VERSION = "1"

# In storage.stages.STAGE_ORDER, after ingest (which the flow runs itself).
STAGES: list[Stage] = [TRANSFORM, SAMPLE_IO, PROMPTS, ANSWER, REVISE1, REVISE2]


def _jsonable(v: Any) -> Any:
    return json.loads(json.dumps(v, default=lambda o: o.model_dump(mode="json") if hasattr(o, "model_dump") else str(o)))


def stage_keys(cfg: "BuildConfig") -> dict[str, str]:
    keys = {"ingest": content_id("ingest", INGEST_VERSION, cfg.max_file_bytes)[:16]}
    for s in STAGES:
        up = keys.get(s.upstream) if s.upstream else None
        parts = [s.name, s.version, _jsonable(s.settings(cfg)), up]
        if s.templates:
            parts.append(template_digest(s.templates))
        keys[s.name] = content_id(*parts)[:16]
    return keys


def build_keys(cfg: "BuildConfig") -> dict[str, str]:
    """``stage_keys`` without the revision turns past ``prediction.revision_turns``: the rows a
    build with these settings makes and exports. A turn's key does not depend on that setting,
    so the rows of a build that ran more turns stay in the store under the same keys; the
    statistics, the report and the check for rows left to retry leave them out, as the export
    does."""
    keys = stage_keys(cfg)
    for turn in range(cfg.prediction.revision_turns + 2, len(TURN_STAGES) + 1):
        keys.pop(TURN_STAGES[turn])
    return keys


def pending_counts(store: Any, cfg: "BuildConfig", keys: dict[str, str]) -> dict[str, int]:
    """Per stage, the rows it would take up if a build ran now: not done yet, or left to retry
    (what ``codeio stats`` shows as pending after an interrupted or failed run)."""
    counts = {}
    for s in STAGES:
        sql, params = s.pending_sql(cfg, keys)
        counts[s.name] = store.query(f"SELECT count(*) FROM ({sql})", params)[0][0]
    return counts
