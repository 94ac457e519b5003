"""The test environments hold still: the locks say what pyproject.toml allows, the suite runs
in exactly the environment its lock pins, and the public CI workflow is a valid one.

``bash scripts/test`` runs the suite twice: in ``.venv`` (uv.lock, the newest allowed
versions) and in ``.venv-lowest`` (requirements/lowest.txt, the floor of each of the
library's ranges). It names the lock of each run in ``AUTHKIT_TEST_LOCK``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "test.yml"


def _deps() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deps", ROOT / "scripts" / "deps.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


deps = _deps()


def test_the_lowest_environment_pins_every_floor_and_the_locked_tools() -> None:
    assert deps.problems() == [], "run `bash scripts/lock` and commit requirements/lowest.txt"
    pins = deps.lowest_pins()
    floors = deps.library_floors()
    assert {"starlette", "fastapi", "pyjwt", "redis", "httpx2"} <= set(floors)
    for name, floor in floors.items():
        assert deps._version_key(pins[name]) == deps._version_key(floor), name


def _copy_of_the_locks(tmp_path: Path) -> Path:
    for name in ("pyproject.toml", "uv.lock"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "requirements").mkdir()
    shutil.copy(ROOT / deps.LOWEST, tmp_path / deps.LOWEST)
    return tmp_path


def test_a_raised_floor_without_a_new_lock_is_named(tmp_path: Path) -> None:
    root = _copy_of_the_locks(tmp_path)
    pyproject = root / "pyproject.toml"
    text = pyproject.read_text()
    floor = deps.library_floors()["itsdangerous"]
    pyproject.write_text(text.replace(f'"itsdangerous>={floor}"', '"itsdangerous>=99.1"'))
    assert deps.problems(root) == [
        f"itsdangerous: pyproject.toml claims >=99.1, the lowest environment has "
        f"{deps.lowest_pins()['itsdangerous']}"
    ]


def test_a_floor_that_cannot_be_installed_says_to_raise_it(tmp_path: Path) -> None:
    root = _copy_of_the_locks(tmp_path)
    lowest = root / deps.LOWEST
    pinned = deps.lowest_pins()["pyjwt"]
    lowest.write_text(lowest.read_text().replace(f"pyjwt=={pinned}", "pyjwt==98.0"))
    [problem] = deps.problems(root)
    assert problem.startswith("pyjwt: pyproject.toml claims >=")
    assert problem.endswith("(the floor cannot be installed with the rest: raise it)")


def test_a_tool_the_lowest_environment_lacks_is_named(tmp_path: Path) -> None:
    root = _copy_of_the_locks(tmp_path)
    lowest = root / deps.LOWEST
    lowest.write_text(re.sub(r"(?m)^twine==", "not-twine==", lowest.read_text()))
    [problem] = deps.problems(root)
    assert problem.startswith("twine: uv.lock has ")
    assert problem.endswith("lowest environment none")


def _installed() -> dict[str, str]:
    own = deps.canonical("fastapi-authkit")
    versions = {}
    for dist in importlib.metadata.distributions():
        name = deps.canonical(dist.metadata["Name"])
        if name != own:
            versions[name] = dist.version
    return versions


def test_this_environment_is_exactly_what_its_lock_pins() -> None:
    """A version that differs from the lock, or a package the lock does not know, cannot
    slip into a run of ``scripts/test`` unnoticed."""
    lock = os.environ.get("AUTHKIT_TEST_LOCK")
    if lock is None:
        pytest.skip("not run by scripts/test, which names the lock in AUTHKIT_TEST_LOCK")
    if lock == "none":  # scripts/test --latest: the newest releases, on purpose
        return
    pins = deps.locked_versions() if lock == "uv.lock" else deps.lowest_pins()
    installed = _installed()
    # uv.lock pins every extra (bench too); an environment holds only the extras it asked for.
    assert {name: v for name, v in installed.items() if pins.get(name) != v} == {}
    if lock != "uv.lock":
        assert set(pins) == set(installed)


def test_the_ci_workflow_passes_github_s_workflow_schema() -> None:
    result = _check_workflow(WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_workflow_check_refuses_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(WORKFLOW.read_text().replace("runs-on:", "run-on:", 1))
    result = _check_workflow(broken)
    assert result.returncode != 0
    assert "run-on" in result.stdout + result.stderr


def _check_workflow(path: Path) -> subprocess.CompletedProcess[str]:
    checker = Path(sys.executable).parent / "check-jsonschema"
    return subprocess.run(
        [str(checker), "--builtin-schema", "vendor.github-workflows", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_ci_workflow_runs_the_locked_the_lowest_and_weekly_the_newest_versions() -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    jobs = workflow["jobs"]
    runs = {
        name: [step["run"] for step in job["steps"] if "run" in step] for name, job in jobs.items()
    }
    assert runs == {
        "locked": ["bash scripts/test --locked"],
        "lowest": ["bash scripts/test --lowest"],
        "latest": ["bash scripts/test --latest"],
    }
    assert workflow[True]["schedule"]  # PyYAML reads the key `on` as True
    assert "schedule" in jobs["latest"]["if"]
    assert "!= 'schedule'" in jobs["locked"]["if"]
    tested = jobs["locked"]["strategy"]["matrix"]["python"]
    assert tested == ["3.11", "3.12", "3.13", "3.14"]


def test_the_classifiers_name_only_the_python_the_suite_runs_on() -> None:
    with (ROOT / "pyproject.toml").open("rb") as f:
        classifiers = tomllib.load(f)["project"]["classifiers"]
    versions = {c.rpartition(":: ")[2] for c in classifiers if re.search(r"Python :: 3\.\d+$", c)}
    assert versions == {f"{sys.version_info.major}.{sys.version_info.minor}"} == {"3.11"}
