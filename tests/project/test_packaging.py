"""The package as a release ships it: ``python -m build`` makes the sdist and, from it, the
wheel (in an isolated build environment, as a release does); ``twine check --strict``
accepts both; the wheel holds the package and its metadata only, ``py.typed`` and the
license included; the sdist holds the sources, tests and docs and nothing of a working tree;
and the wheel, installed with its declared dependencies into a fresh virtual environment
that cannot see this one, imports and works.

The fresh environment gets the dependency versions this suite runs with (a constraints file
written from the running environment), so pip takes them from its cache or PyPI without
resolving anew; nothing else is downloaded.
"""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
import tarfile
import textwrap
import tomllib
import zipfile
from pathlib import Path

import pytest

import fastapi_authkit

from tests.support.processes import REPO_ROOT

BUILD_TIMEOUT = 300
INSTALL_TIMEOUT = 300
PROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
NAME, VERSION = PROJECT["name"], PROJECT["version"]
DIST_NAME = NAME.replace("-", "_")
# Working-tree leftovers an archive must never carry.
FORBIDDEN_PARTS = {
    ".venv",
    ".git",
    "test-artifacts",
    "__pycache__",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".hypothesis",
    "htmlcov",
    "dist",
    "site",
}
# The sdist: what it takes to build, test and document the package (pyproject's sdist include).
SDIST_ROOTS = {"fastapi_authkit", "tests", "example_app", "fuzz", "docs"}
SDIST_FILES = {
    "pyproject.toml",
    "README.md",
    "CHANGELOG.md",
    "LICENSE",
    "mkdocs.yml",
    "PKG-INFO",
    ".gitignore",
}


def run(command: list[str], *, timeout: float, cwd: Path = REPO_ROOT) -> str:
    result = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        pytest.fail(
            f"{' '.join(command)} exited with {result.returncode}:\n{result.stdout}{result.stderr}",
            pytrace=False,
        )
    return result.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("dist")
    run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(REPO_ROOT)], timeout=BUILD_TIMEOUT
    )
    wheels, sdists = sorted(out.glob("*.whl")), sorted(out.glob("*.tar.gz"))
    assert [p.name for p in wheels] == [f"{DIST_NAME}-{VERSION}-py3-none-any.whl"]
    assert [p.name for p in sdists] == [f"{DIST_NAME}-{VERSION}.tar.gz"]
    return {"wheel": wheels[0], "sdist": sdists[0]}


def tracked(*roots: str) -> set[str]:
    """The files git tracks under ``roots`` (which must still exist in the working tree)."""
    listing = run(["git", "ls-files", "-z", "--", *roots], timeout=30)
    return {name for name in listing.split("\0") if name and (REPO_ROOT / name).is_file()}


def forbidden(names: set[str]) -> list[str]:
    return sorted(
        name
        for name in names
        if FORBIDDEN_PARTS & set(Path(name).parts)
        or name.endswith((".pyc", ".pyo"))
        or Path(name).name.startswith(".coverage")
    )


def test_twine_check_strict_accepts_both(dist: dict[str, Path]) -> None:
    output = run(
        [
            sys.executable,
            "-m",
            "twine",
            "check",
            "--strict",
            str(dist["wheel"]),
            str(dist["sdist"]),
        ],
        timeout=60,
    )
    assert output.count("PASSED") == 2, output


def test_the_wheel_holds_the_package_only(dist: dict[str, Path]) -> None:
    with zipfile.ZipFile(dist["wheel"]) as wheel:
        names = set(wheel.namelist())
        metadata = wheel.read(f"{DIST_NAME}-{VERSION}.dist-info/METADATA").decode()
        license_text = wheel.read(f"{DIST_NAME}-{VERSION}.dist-info/licenses/LICENSE").decode()
    info = f"{DIST_NAME}-{VERSION}.dist-info/"
    assert {name for name in names if not name.startswith(("fastapi_authkit/", info))} == set()
    assert forbidden(names) == []
    assert "fastapi_authkit/py.typed" in names
    package = {name for name in tracked("fastapi_authkit") if name.endswith(".py")}
    assert package - names == set()  # every module of the package is shipped
    assert license_text == (REPO_ROOT / "LICENSE").read_text()
    assert "License-Expression: MIT" in metadata.splitlines()
    assert f"Version: {VERSION}" in metadata.splitlines()


def test_the_sdist_holds_the_sources_and_nothing_of_a_working_tree(
    dist: dict[str, Path],
) -> None:
    prefix = f"{DIST_NAME}-{VERSION}/"
    with tarfile.open(dist["sdist"]) as sdist:
        names = {m.name.removeprefix(prefix) for m in sdist.getmembers() if m.isfile()}
    assert forbidden(names) == []
    top_level = {name.split("/", 1)[0] for name in names}
    assert top_level == SDIST_ROOTS | SDIST_FILES
    # Everything git tracks under the included roots is there (nothing silently left out).
    assert tracked(*sorted(SDIST_ROOTS)) - names == set()
    assert "fastapi_authkit/py.typed" in names


def test_the_wheel_installs_into_a_fresh_venv_and_imports(
    dist: dict[str, Path], tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], timeout=60)
    python = venv / "bin" / "python"
    # The dependency versions this suite runs with, so that the install resolves nothing anew.
    constraints = tmp_path / "constraints.txt"
    constraints.write_text(
        "".join(
            f"{d.metadata['Name']}=={d.version}\n"
            for d in importlib.metadata.distributions()
            if d.metadata["Name"] and d.metadata["Name"].lower() != NAME
        )
    )
    run(
        [
            *(sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet"),
            *("--disable-pip-version-check", "--only-binary", ":all:"),
            *("--constraint", str(constraints), str(dist["wheel"])),
        ],
        timeout=INSTALL_TIMEOUT,
    )
    check = textwrap.dedent(
        f"""
        import importlib.metadata, importlib.util, json, sys
        from pathlib import Path

        import fastapi_authkit
        from fastapi_authkit import *  # noqa: F403  every name of __all__ resolves
        from fastapi_authkit import AuthKitMiddleware, create_store
        from fastapi_authkit.stores import MemoryStore

        package = Path(fastapi_authkit.__file__).parent
        # The runtime dependencies suffice: a store and the middleware build.
        store = create_store(secret_key="s" * 32, token_key="t" * 32)
        AuthKitMiddleware(lambda scope, receive, send: None, store=store)
        MemoryStore()
        recorded = [str(f) for f in importlib.metadata.files("{NAME}")]
        print(json.dumps({{
            "package": str(package),
            "prefix": sys.prefix,
            "py_typed": (package / "py.typed").is_file(),
            "recorded": "fastapi_authkit/py.typed" in recorded,
            "version": importlib.metadata.version("{NAME}"),
            "all": sorted(fastapi_authkit.__all__),
            "sees_dev_env": importlib.util.find_spec("pytest") is not None,
        }}))
        """
    )
    # Run outside the repository, so that the working tree's fastapi_authkit/ is not importable.
    report = json.loads(run([str(python), "-c", check], timeout=60, cwd=tmp_path))
    assert Path(report["package"]).is_relative_to(venv)
    assert Path(report["prefix"]) == venv
    assert report["sees_dev_env"] is False  # fresh: not this environment's packages
    assert report["py_typed"] is True
    assert report["recorded"] is True
    assert report["version"] == VERSION
    assert report["all"] == sorted(fastapi_authkit.__all__)
