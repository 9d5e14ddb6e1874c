"""The stage contract: a name, a version, what settings it depends on, how to find its pending
input rows in the store, and a pure function over one shard of them.

A new stage is one small module exporting a ``Stage``; the flow knows only this contract.

A stage's config key is a hash of its name, its ``version``, its ``settings(cfg)``, the text of
its ``templates`` and its upstream stage's key: a row is done for a key once it has an outcome
under it. So:

* bump ``version`` when the stage's code changes what it makes for the same settings (a new
  rule, a fix), and when a default of a setting it reads changes;
* an edited prompt template needs no bump: the stages that render it name it in ``templates``
  and their keys cover its text;
* a new setting whose default keeps today's behaviour needs no bump: ``settings`` puts only
  values that differ from their defaults in the key (``non_default``), so existing builds
  keep their keys and rows (tests/test_stage_keys.py pins the defaults this relies on).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from storage.models import ShardResult

if TYPE_CHECKING:  # the config lives with the flows; stages only read it
    from flows.config import BuildConfig
    from storage.store import Store


def non_default(settings: BaseModel, **exclude: Any) -> dict[str, Any]:
    """The settings that differ from their defaults: what a config key covers of a settings
    group (see the module docstring)."""
    return settings.model_dump(mode="json", exclude_defaults=True, **exclude)


@dataclass(frozen=True)
class ShardContext:
    """What a shard task gets besides its rows."""

    config_key: str
    cached_calls: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The journal file the flow created for the shard's completed LLM calls; a shard appends to
    # it only where it sees that file (this machine, or a directory shared at the same path).
    journal_path: str | None = None
    run_id: str = ""  # not part of the shard cache key: tells a cached result from a fresh one
    # The keys of the shard's calls in row order, as the flow computed them with the stage's
    # ``call_keys`` (empty: the shard computes them itself).
    call_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class Stage:
    name: str
    version: str
    # Settings that change this stage's output; part of its config key.
    settings: Callable[["BuildConfig"], Any]
    # SQL selecting the ids of input rows, given {config_key, upstream keys}; must return one
    # column named ``id`` of rows that have no outcome yet for this stage's config key, or
    # whose outcome is ``retry`` (a transient LLM failure an earlier run left to retry).
    pending_sql: Callable[["BuildConfig", dict[str, str]], tuple[str, list[Any]]]
    # Load full rows for a list of ids (flow process): each row holds its input id as ``id``,
    # and depends on that id alone (the flow loads several shards' rows with one call).
    load_rows: Callable[["Store", list[str], dict[str, str]], list[dict[str, Any]]]
    # The pure shard function (task process).
    run_shard: Callable[[list[dict[str, Any]], "BuildConfig", ShardContext], ShardResult]
    # For LLM stages: the call keys a shard will need, so the flow can hand over cached calls.
    call_keys: Callable[[list[dict[str, Any]], "BuildConfig"], list[str]] | None = None
    upstream: str | None = None
    # The prompt template files (prompts/templates) whose text shapes this stage's output: their
    # digest is part of its config key, so an edited template re-runs the stages that render it.
    templates: tuple[str, ...] = ()
