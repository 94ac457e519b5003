"""The Python code blocks of README.md and the documentation site (docs/), read from the
pages: each block with its marker (``<!-- docs-test: NAME -->`` or ``<!-- docs-fragment:
REASON -->``, see tests/project/test_docs_examples.py), and :class:`Examples` to run one as a
module, as the tests of the pages and of the deployments they describe do."""

from __future__ import annotations

import re
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import REPO_ROOT

DOCS = REPO_ROOT / "docs"
FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[\w-]*)")
MARKER = re.compile(r"^\s*<!-- docs-(?P<kind>test|fragment): (?P<label>\S.*?) -->\s*$")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    code: str  # dedented, preceded by blank lines so that tracebacks show the page's lines
    kind: str | None  # "test", "fragment", or None (unmarked)
    label: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO_ROOT)}:{self.line}"


def read_blocks(path: Path) -> list[Block]:
    lines = path.read_text().splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if fence is None:
            i += 1
            continue
        indent = fence["indent"]
        end = i + 1
        while end < len(lines) and lines[end] != f"{indent}```":
            end += 1
        if fence["lang"] in ("python", "py"):
            body = [line.removeprefix(indent) for line in lines[i + 1 : end]]
            before = [line for line in lines[:i] if line.strip()]
            marker = MARKER.match(before[-1]) if before else None
            blocks.append(
                Block(
                    path=path,
                    line=i + 1,
                    code="\n" * (i + 1) + "\n".join(body) + "\n",
                    kind=marker["kind"] if marker else None,
                    label=marker["label"] if marker else "",
                )
            )
        i = end + 1
    return blocks


PAGES = [REPO_ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
BLOCKS = [block for page in PAGES for block in read_blocks(page)]
EXAMPLES = {block.label: block for block in BLOCKS if block.kind == "test"}
FRAGMENTS = [block for block in BLOCKS if block.kind == "fragment"]


class Examples:
    """Runs the docs' blocks as modules, registered in sys.modules while the test runs (as
    an imported ``app.py`` would be)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch = monkeypatch

    def run(
        self,
        label: str,
        into: types.ModuleType | None = None,
        replace: dict[str, str] | None = None,
    ) -> Any:
        """Run the example ``label`` (into ``into``'s namespace, for one that extends
        another), with each ``replace`` key (a placeholder such as a provider's URL, which
        must occur) replaced by its value."""
        block = EXAMPLES[label]
        code = block.code
        for placeholder, value in (replace or {}).items():
            assert placeholder in code, f"{placeholder!r} is not in {block.where}"
            code = code.replace(placeholder, value)
        module = into
        if module is None:
            module = types.ModuleType(f"docs_example_{label}")
            self.monkeypatch.setitem(sys.modules, module.__name__, module)
        exec(compile(code, str(block.path), "exec"), module.__dict__)  # noqa: S102
        return module
