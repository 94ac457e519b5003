"""The goals a benchmark is held to, its command line, and its PASS/FAIL lines for run_all."""

from __future__ import annotations

import argparse
import json
import signal
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

TIMES = "\u00d7"  # the multiplication sign (ruff's RUF001 would take a literal one for an x)


@dataclass(frozen=True)
class Target:
    """One goal a benchmark is held to. ``passed`` is None when it could not be measured."""

    name: str
    passed: bool | None
    detail: str

    @property
    def status(self) -> str:
        return "SKIP" if self.passed is None else ("PASS" if self.passed else "FAIL")

    def line(self) -> str:
        return f"{self.status}  {self.name}: {self.detail}"


def ratio_target(
    name: str, value: float | None, op: Literal["<=", ">="], limit: float, *, why: str = ""
) -> Target:
    """A target on a ratio, e.g. ``ratio_target("x vs y", 1.3, "<=", 1.1)``."""
    if value is None:
        return Target(name, None, why or "not measured")
    passed = value <= limit if op == "<=" else value >= limit
    sign = "≤" if op == "<=" else "≥"
    return Target(name, passed, f"{value:.2f}{TIMES} (target {sign} {limit:.2f}{TIMES})")


def print_targets(targets: Sequence[Target]) -> None:
    print("\ntargets:")
    for target in targets:
        print(f"  {target.line()}")


def bench_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--json", type=Path, help="also write the targets to this file")
    return parser


def finish(targets: Sequence[Target], json_path: Path | None) -> None:
    """Print the targets and hand them to run_all. A FAILed target is a result, not an
    error: the benchmark itself still exits 0."""
    print_targets(targets)
    if json_path is not None:
        json_path.write_text(json.dumps([asdict(t) for t in targets]))


def stop_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so that every ``finally`` (servers, redis) runs."""

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)
