"""Pipeline stages: one module per stage, the logic in plain functions over a shard of rows."""
