"""The two locked test environments and the checks that keep them true to pyproject.toml.

``uv.lock`` holds the newest versions the ranges allow, for every tool and test dependency
(``uv sync --locked``). ``requirements/lowest.txt`` holds the *lowest* version that each of
the library's own dependency ranges allows (uv's ``--resolution lowest-direct``), with the
test tools pinned as in ``uv.lock``, so that a floor in pyproject.toml is a tested claim.

    python scripts/deps.py tools            the test tools pinned as uv.lock pins them
    python scripts/deps.py check            requirements/lowest.txt matches pyproject.toml

Run through ``bash scripts/lock``; the test suite runs ``check`` (tests/test_dependencies.py).
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

try:
    from packaging.markers import Marker
except ImportError:  # the machine's own python3 has it only inside pip
    from pip._vendor.packaging.markers import Marker  # type: ignore[import-not-found,no-redef]

ROOT = Path(__file__).resolve().parent.parent
LOWEST = Path("requirements", "lowest.txt")
# The library's own ranges: what a user's install resolves. Everything else in the dev and
# docs extras is a test tool, pinned in both environments to uv.lock's version.
LIBRARY_EXTRAS = ("crypto", "redis", "oidc", "example")
TOOL_EXTRAS = ("dev", "docs")

_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*([^;]*)(;.*)?$")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pyproject(root: Path) -> dict[str, object]:
    with (root / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)["project"]  # type: ignore[no-any-return]


def _requirements(
    root: Path, extras: tuple[str, ...], *, with_base: bool
) -> dict[str, tuple[str, str, str]]:
    """name -> (its extras, version specifier, environment marker), for the project's own
    requirements (no self-references)."""
    project = _pyproject(root)
    own = canonical(str(project["name"]))
    optional: dict[str, list[str]] = project["optional-dependencies"]  # type: ignore[assignment]
    lines: list[str] = list(project["dependencies"]) if with_base else []  # type: ignore[call-overload]
    for extra in extras:
        lines += optional[extra]
    found: dict[str, tuple[str, str, str]] = {}
    for line in lines:
        match = _REQUIREMENT.match(line)
        if match is None:
            raise SystemExit(f"cannot read the requirement {line!r} in pyproject.toml")
        name = canonical(match.group(1))
        if name != own:
            found[name] = (
                match.group(2) or "",
                match.group(3).strip(),
                (match.group(4) or "").strip(),
            )
    return found


def library_floors(root: Path = ROOT) -> dict[str, str]:
    """Each of the library's direct dependencies -> the lowest version its range allows."""
    floors: dict[str, str] = {}
    for name, (_, spec, _) in _requirements(root, LIBRARY_EXTRAS, with_base=True).items():
        lower = [part.strip()[2:] for part in spec.split(",") if part.strip().startswith(">=")]
        if len(lower) != 1:
            raise SystemExit(f"{name}: a library dependency needs one '>=' floor, got {spec!r}")
        floors[name] = max(lower[0], floors.get(name, lower[0]), key=_version_key)
    return floors


def _version_key(version: str) -> tuple[int, ...]:
    """Release numbers compared as PEP 440 does: 4.10 == 4.10.0."""
    parts = [int(part) for part in re.findall(r"\d+", version)]
    while parts and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def locked_versions(root: Path = ROOT) -> dict[str, str]:
    """Each package uv.lock pins -> its version for the running interpreter and platform
    (uv.lock is universal: where it pins several versions of a package, each carries the
    markers of the environments it is for)."""
    with (root / "uv.lock").open("rb") as f:
        lock = tomllib.load(f)
    versions: dict[str, str] = {}
    for package in lock["package"]:
        markers = package.get("resolution-markers")
        if markers is None or any(Marker(m).evaluate() for m in markers):
            versions[canonical(package["name"])] = package.get("version", "")
    return versions


def tools(root: Path = ROOT) -> list[str]:
    """The test tools (dev and docs extras, less the library's own dependencies), pinned."""
    library = _requirements(root, LIBRARY_EXTRAS, with_base=True)
    locked = locked_versions(root)
    wanted = _requirements(root, TOOL_EXTRAS, with_base=False)
    return [
        f"{name}{extras}=={locked[name]}{' ' + marker if marker else ''}"
        for name, (extras, _, marker) in sorted(wanted.items())
        if name not in library
    ]


def lowest_pins(root: Path = ROOT) -> dict[str, str]:
    """Each package requirements/lowest.txt pins -> its version."""
    pins: dict[str, str] = {}
    for line in (root / LOWEST).read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line)
        if match:
            pins[canonical(match.group(1))] = match.group(2)
    return pins


def problems(root: Path = ROOT) -> list[str]:
    """What makes requirements/lowest.txt untrue to pyproject.toml and uv.lock, if anything."""
    if not (root / LOWEST).exists():
        return [f"{LOWEST} is missing"]
    pins = lowest_pins(root)
    found = []
    for name, floor in sorted(library_floors(root).items()):
        pinned = pins.get(name)
        if pinned is None:
            found.append(f"{name}: not in the lowest environment")
        elif _version_key(pinned) != _version_key(floor):
            found.append(
                f"{name}: pyproject.toml claims >={floor}, the lowest environment has {pinned}"
                + (
                    " (the floor cannot be installed with the rest: raise it)"
                    if _version_key(pinned) > _version_key(floor)
                    else ""
                )
            )
    for tool in tools(root):
        name, _, version = re.sub(r"\[.*\]", "", tool.partition(" ")[0]).partition("==")
        if pins.get(name) != version:
            found.append(
                f"{name}: uv.lock has {version}, the lowest environment {pins.get(name, 'none')}"
            )
    return found


def main(argv: list[str]) -> int:
    if argv == ["tools"]:
        print("\n".join(tools()))
        return 0
    if argv == ["check"]:
        found = problems()
        for problem in found:
            print(problem, file=sys.stderr)
        if found:
            print(
                "requirements/lowest.txt is out of date: run `bash scripts/lock`", file=sys.stderr
            )
        return 1 if found else 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
