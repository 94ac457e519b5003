"""Run every benchmark, each in a fresh interpreter, then print every target's PASS/FAIL.

    .venv/bin/python -m benchmarks.run_all [--only peers storm ...]

(``bash scripts/bench`` sets up the environment first and then runs this.) Each benchmark
prints its own measurements as it goes; the summary at the end lists all targets. Exit
status: 0 when every target passed, 1 when a target failed, 2 when a benchmark itself
failed to run (its servers are stopped either way).
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.targets import Target, stop_on_sigterm

from tests.support.processes import REPO_ROOT

BENCHMARKS = {
    "peers": "benchmarks.peers",
    "scaling": "benchmarks.scaling",
    "refresh_cost": "benchmarks.refresh_cost",
    "uvicorn_rps": "benchmarks.uvicorn_rps",
    "storm": "benchmarks.storm",
    "revocation": "benchmarks.revocation",
    "revocation_cluster": "benchmarks.revocation --cluster",
    "live_close_latency": "benchmarks.live_close_latency",
    "memory": "benchmarks.memory",
    "loginguard": "benchmarks.loginguard",
}
TIMEOUT = 240.0


def run_one(module: str, json_path: Path) -> int:
    """Run ``module`` (and the arguments after it) with its output passed straight
    through; stop it on timeout or on our own SIGTERM/Ctrl-C (it then stops its servers
    in its ``finally`` blocks)."""
    process = subprocess.Popen(
        [sys.executable, "-m", *module.split(), "--json", str(json_path)], cwd=REPO_ROOT
    )
    try:
        return process.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        print(f"\n{module}: still running after {TIMEOUT:.0f} s, stopping it", flush=True)
        return -1
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), help="run just these")
    args = parser.parse_args()
    stop_on_sigterm()
    names = args.only or list(BENCHMARKS)
    results: dict[str, list[Target] | str] = {}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="authkit-bench-") as tmp:
        for name in names:
            print(f"\n{'=' * 30} {name} {'=' * (60 - len(name))}", flush=True)
            begin = time.monotonic()
            json_path = Path(tmp) / f"{name}.json"
            code = run_one(BENCHMARKS[name], json_path)
            print(f"({name}: {time.monotonic() - begin:.0f} s)", flush=True)
            if code == 0 and json_path.exists():
                results[name] = [Target(**t) for t in json.loads(json_path.read_text())]
            else:
                results[name] = f"did not complete (exit status {code})"

    print(f"\n{'=' * 30} summary {'=' * 53}")
    counts = {"PASS": 0, "FAIL": 0, "SKIP": 0, "ERROR": 0}
    for name, outcome in results.items():
        if isinstance(outcome, str):
            counts["ERROR"] += 1
            print(f"ERROR {name}: {outcome}")
            continue
        for target in outcome:
            counts[target.status] += 1
            print(f"{target.status}  [{name}] {target.name}: {target.detail}")
    total = time.monotonic() - started
    print(
        f"\n{counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped, "
        f"{counts['ERROR']} benchmarks errored; {total:.0f} s in all"
    )
    sys.exit(2 if counts["ERROR"] else 1 if counts["FAIL"] else 0)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # the running benchmark got the Ctrl-C too and stopped its servers
        sys.exit(130)
