"""The documentation site builds with ``mkdocs build --strict`` (any warning fails: a broken
link, a missing page, a docstring mkdocstrings cannot render), and its reference is the one
generated from the code: every parameter of the configuration functions is in the built
page, the docstrings' Sphinx-style roles became links (docs/_ext/sphinx_roles.py), and
every public name has its entry in the reference.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Annotated, get_origin

import pytest

import fastapi_authkit
import fastapi_authkit.stores
from fastapi_authkit import create_issuer, create_refresh, create_store

from tests.support.processes import REPO_ROOT

BUILD_TIMEOUT = 120


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if importlib.util.find_spec("mkdocs") is None:
        pytest.fail(
            "mkdocs is not installed: pip install -e '.[docs]' (bash scripts/test does)",
            pytrace=False,
        )
    site_dir = tmp_path_factory.mktemp("site")
    # Material prints a banner about its successor unless told not to; it is not a warning.
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site_dir)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    if build.returncode != 0:
        pytest.fail(f"mkdocs build --strict failed:\n{build.stdout}{build.stderr}", pytrace=False)
    return site_dir


def test_every_page_of_the_navigation_is_built(site: Path) -> None:
    pages = sorted(
        str(path.relative_to(REPO_ROOT / "docs").with_suffix(""))
        for path in (REPO_ROOT / "docs").rglob("*.md")
    )
    for page in pages:
        built = site / ("index.html" if page == "index" else f"{page}/index.html")
        assert built.is_file(), page


@pytest.mark.parametrize("function", [create_store, create_refresh, create_issuer])
def test_the_configuration_reference_is_generated_from_the_signatures(
    site: Path, function: object
) -> None:
    html = (site / "reference/configuration/index.html").read_text()
    anchor = f'id="fastapi_authkit.{function.__name__}"'  # type: ignore[attr-defined]
    assert anchor in html
    signature = html[html.index(anchor) :]
    signature = signature[: signature.index("</code></pre>")]
    for parameter in inspect.signature(function).parameters:  # type: ignore[arg-type]
        assert f">{parameter}<" in signature, parameter


def test_docstring_roles_became_links(site: Path) -> None:
    api = (site / "reference/api/index.html").read_text()
    configuration = (site / "reference/configuration/index.html").read_text()
    # create_store's docstring says ":class:`AuthStore`": a link to the API page's entry.
    assert 'href="../api/#fastapi_authkit.config.AuthStore"' in configuration
    assert 'href="#fastapi_authkit.AuthKitError"' in api
    # A role left as it was would show as ":class:" before its code span.
    for role in ("class", "func", "meth", "attr", "exc"):
        assert f":{role}:<code>" not in api + configuration


def test_every_public_name_is_in_the_reference() -> None:
    """A name added to the public API gets its reference entry (``::: fastapi_authkit.X``,
    ``::: fastapi_authkit.events.X`` for a name that lives in its module); the ``Annotated``
    aliases, which carry no docstring of their own, are in the API table."""
    reference = "".join(
        (REPO_ROOT / "docs/reference" / page).read_text() for page in ("api.md", "configuration.md")
    )
    rendered = set(re.findall(r"^::: (fastapi_authkit(?:\.\w+)*)$", reference, re.M))
    public = {
        f"fastapi_authkit.{name}": getattr(fastapi_authkit, name)
        for name in fastapi_authkit.__all__
    }
    for name, module in fastapi_authkit._MOVED.items():
        public[f"fastapi_authkit.{module}.{name}"] = getattr(
            importlib.import_module(f"fastapi_authkit.{module}"), name
        )
    for name in fastapi_authkit.stores.__all__:
        public[f"fastapi_authkit.stores.{name}"] = getattr(fastapi_authkit.stores, name)
    aliases = {path for path, value in public.items() if get_origin(value) is Annotated}
    assert set(public) - aliases - rendered == set()
    assert {path for path in aliases if f"`{path.rsplit('.', 1)[1]}`" not in reference} == set()
