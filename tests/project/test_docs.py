"""README and the docs site stay true to the code: every option of create_store,
create_refresh and create_issuer is in its configuration table (docs/reference/configuration.md;
README.md shows only the main ones and links there) and nothing else is; every public name has
a docstring."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import pytest

import fastapi_authkit
from fastapi_authkit import create_issuer, create_refresh, create_store
from fastapi_authkit.stores import MemoryStore, RedisStore

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = {
    "docs/reference/configuration.md": (ROOT / "docs/reference/configuration.md").read_text(),
}


def table_options(text: str, heading: str) -> list[str]:
    """Backticked names in the first column of the table that follows ``heading``."""
    start = text.index(heading)
    lines = text[start:].splitlines()[1:]
    rows: list[str] = []
    in_table = False
    for line in lines:
        if line.startswith("|"):
            in_table = True
            match = re.match(r"\| `([a-z_]+)` \|", line)
            if match:
                rows.append(match.group(1))
        elif in_table:
            break
    return rows


@pytest.mark.parametrize("document", sorted(DOCUMENTS))
@pytest.mark.parametrize(
    ("heading", "function"),
    [
        ("`create_store(...)` (keyword-only", create_store),
        ("`create_refresh(...)`:", create_refresh),
        ("`create_issuer(...)` options", create_issuer),
        ("`RedisStore.from_url(...)` options", RedisStore.from_url),
    ],
)
def test_configuration_tables_match_the_signatures(
    document: str, heading: str, function: Any
) -> None:
    documented = table_options(DOCUMENTS[document], heading)
    parameters = list(inspect.signature(function).parameters)
    assert sorted(documented) == sorted(parameters)
    assert len(documented) == len(set(documented))


def test_every_public_name_has_a_docstring() -> None:
    missing = []
    for name in fastapi_authkit.__all__:
        obj = getattr(fastapi_authkit, name)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            if not type(obj).__module__.startswith("fastapi_authkit"):
                continue  # Annotated aliases: documented with what they alias
            obj = type(obj)  # a dependency instance: its class says what it does
        if not obj.__doc__:  # its own docstring, not one inherited from a base class
            missing.append(name)
    assert missing == []


def test_the_readme_docs_command_installs_what_it_runs() -> None:
    """README's docs command used to be `.venv/bin/mkdocs serve`, which the environment the
    README's own commands create (scripts/example: the example extra) does not have."""
    readme = (ROOT / "README.md").read_text()
    assert "`bash scripts/docs`" in readme
    assert ".venv/bin/mkdocs" not in readme
    script = ROOT / "scripts" / "docs"
    assert script.stat().st_mode & 0o111, "scripts/docs is not executable"
    text = script.read_text()
    assert "locked_env docs --inexact" in text
    assert text.rstrip().endswith('exec .venv/bin/mkdocs serve "$@"')


def test_the_issuer_refresh_interval_is_documented_as_create_store_sets_it() -> None:
    """create_store(token_issuer=...) refreshes at min(60, access_ttl / 5) before exp."""
    for access_ttl, interval in ((300, 60.0), (60, 12.0)):
        issuer = create_issuer(backend=MemoryStore(), signing_key="s" * 32, access_ttl=access_ttl)
        store = create_store(secret_key="c" * 32, token_issuer=issuer)
        assert store.refresh is not None
        assert store.refresh.interval == interval
    assert "min(60, access_ttl / 5)" in " ".join((create_issuer.__doc__ or "").split())
    assert "min(60, access_ttl / 5)" in (ROOT / "docs/reference/configuration.md").read_text()
