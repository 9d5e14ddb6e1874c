"""Prefect deployments of the build: `codeio/build-dataset` (run from the UI) and
`codeio/incremental-ingest` (on a schedule), served by `python -m deployments.serve`."""
