"""Benchmarks for fastapi-authkit, each with the targets it is held to.

Run everything with ``bash scripts/bench`` (or ``.venv/bin/python -m benchmarks.run_all``);
one benchmark alone with ``.venv/bin/python -m benchmarks.peers`` (``scaling``,
``refresh_cost``, ``uvicorn_rps``, ``storm``). Each prints its measurements and one
PASS/FAIL line per target; ``--json PATH`` also writes the targets for ``run_all``.
"""
