"""The package's import graph: no cycle, and every import points down the layers.

Every ``import`` statement of every module counts, wherever it stands (module level, inside
a function, under ``if TYPE_CHECKING:``): a cycle hidden in a function-level import is still
a cycle in the design, and one that breaks as soon as someone moves the import up.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import fastapi_authkit

PACKAGE = "fastapi_authkit"
ROOT = Path(fastapi_authkit.__file__).resolve().parent

# Lowest first. A module may import its own layer and the layers below, never above.
# Configuration composes the pure parts (it builds the verifier, the codecs and the cookie
# policy), so it sits above them; the reader decides with the configuration; the request
# state sits on the reader's layer and below everything that changes a request.
LAYERS: tuple[tuple[str, frozenset[str]], ...] = (
    (
        "foundations",
        frozenset(
            {
                "errors",
                "fifo",
                "jsoncopy",
                "callback",
                "notices",
                "clientinfo",
                "forwarded",
                "localpath",
                "secretvalue",
                "validation",
            }
        ),
    ),
    (
        "stores (know nothing of requests)",
        frozenset(
            {
                "stores",
                "stores.base",
                "stores.listeners",
                "stores.memory",
                "stores.sealing",
                "stores.view",
                "stores.redis",
                "stores.redis.checks",
                "stores.redis.cluster_state",
                "stores.redis.cluster_subscription",
                "stores.redis.epoch",
                "stores.redis.eviction",
                "stores.redis.families",
                "stores.redis.flights",
                "stores.redis.gateway",
                "stores.redis.keys",
                "stores.redis.legacy",
                "stores.redis.node_subscription",
                "stores.redis.revocations",
                "stores.redis.scripts",
                "stores.redis.scripts.families",
                "stores.redis.scripts.flights",
                "stores.redis.scripts.revocations",
                "stores.redis.scripts.throttles",
                "stores.redis.sessions",
                "stores.redis.store",
                "stores.redis.subjects",
                "stores.redis.subscriber",
                "stores.redis.throttles",
                "stores.redis.topology",
                "stores.redis.urls",
            }
        ),
    ),
    (
        "pure parts",
        frozenset(
            {
                "tokens",
                "tokens.claims",
                "tokens.keys",
                "tokens.verifier",
                "cookies",
                "csrf",
                "origins",
                "userstate",
                "session",
                "oidc.transaction",
                "oidc.identity",
            }
        ),
    ),
    # The identity-provider glue is a token source too: keys, discovery, the refresh grant.
    (
        "token sources",
        frozenset(
            {
                "source",
                "familyids",
                "sessiontokens",
                "oidc.http",
                "oidc.jwks",
                "oidc.discovery",
                "oidc.grant",
                "oidc.introspection",
                "oidc.idtoken",
            }
        ),
    ),
    # Events name sessions by the token source's session claim; configuration holds the hook.
    ("audit events", frozenset({"events", "eventdelivery"})),
    (
        "configuration",
        frozenset({"config", "refreshconfig", "refreshroute", "storeoptions", "liveoptions"}),
    ),
    ("reading a request", frozenset({"decision", "forgery", "readercache", "bearer", "reader"})),
    ("the request's state", frozenset({"authstate", "state"})),
    (
        "changing a request's session",
        frozenset(
            {
                "refresh",
                "refresh.context",
                "refresh.outcomes",
                "refresh.acceptance",
                "refresh.app_callback",
                "refresh.rotation",
                "refresh.flight",
                "refresh.shared",
                "bearerclients",
                "issuer",
            }
        ),
    ),
    # The login guard reports through the request's audit hook; it changes no session.
    ("guarding sign-in", frozenset({"loginguard"})),
    # Open connections of sessions, ended by the middleware when their session ends.
    ("open connections", frozenset({"live"})),
    # The middleware and what it does at the request's edge: reporting to the audit hook,
    # refusing, warning of cookies a browser drops, watching streams.
    ("ASGI", frozenset({"middleware", "audit", "refusal", "dropped_cookies", "streams"})),
    # The OIDC client builds a FastAPI router for the code flow (oidc.signin), which ends a
    # social sign-in in the issuer's session (oidc.social).
    (
        "FastAPI",
        frozenset({"dependencies", "oidc.signin", "oidc.social", "oidc.modes", "oidc.client"}),
    ),
    ("public API", frozenset({"__init__", "oidc"})),
    # The test kit for apps drives apps from outside, through everything above (it never
    # imports FastAPI: apps on plain Starlette are tested with it too).
    (
        "test kit",
        frozenset(
            {
                "testing",
                "testing.apps",
                "testing.assertions",
                "testing.clients",
                "testing.clock",
                "testing.failures",
                "testing.login",
                "testing.plugin",
            }
        ),
    ),
)
LAYER_OF = {module: rank for rank, (_, modules) in enumerate(LAYERS) for module in modules}
# Only the FastAPI layer (and the package's re-exports) may import FastAPI: the middleware
# and everything below it run under plain Starlette.
FASTAPI_ALLOWED = frozenset({"dependencies", "__init__", "oidc.signin", "oidc.client", "oidc"})


def _modules() -> dict[str, Path]:
    """Module name relative to the package ("stores.redis", "__init__") -> file."""
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]  # a subpackage's __init__ is the subpackage itself
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> Iterator[tuple[str, int]]:
    """(imported name, line) for every import in the module: package modules relative to
    the package ("config"), anything else by its absolute top-level name ("fastapi")."""
    is_package = path.name == "__init__.py"
    here = [] if name == "__init__" else name.split(".")
    base = here if is_package else here[:-1]  # what "." means in this module
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield _relative(alias.name.split(".")), node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - (node.level - 1)]
                target = anchor + (node.module.split(".") if node.module else [])
                origin = [PACKAGE, *target]
            else:
                origin = (node.module or "").split(".")
            module = _relative(origin)
            yield module, node.lineno
            for alias in node.names:  # "from . import x" or "from .stores import redis"
                sub = f"{module}.{alias.name}" if module != "__init__" else alias.name
                if sub in MODULES:
                    yield sub, node.lineno


def _relative(parts: list[str]) -> str:
    if parts[0] != PACKAGE:
        return parts[0]
    return ".".join(parts[1:]) or "__init__"


def _graph() -> dict[str, set[str]]:
    return {
        name: {target for target, _ in _imports(name, path) if target in MODULES} - {name}
        for name, path in MODULES.items()
    }


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each as a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_package_has_no_import_cycle() -> None:
    cycles = _cycles(_graph())
    assert cycles == [], "import cycles (every import statement counts): " + "; ".join(
        " <-> ".join(cycle) for cycle in cycles
    )


def test_the_cycle_finder_finds_cycles() -> None:
    # The finder itself, on graphs with known answers (a finder that never finds anything
    # would make the test above pass on any package).
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
    config_issuer = {"config": {"issuer"}, "issuer": {"state"}, "state": {"session"}}
    assert _cycles({**config_issuer, "session": {"config"}}) == [
        ["config", "issuer", "session", "state"]
    ]


def test_every_module_has_a_layer() -> None:
    # A new module must be placed in LAYERS, deciding what it may import.
    assert set(MODULES) == set(LAYER_OF), "place new modules in LAYERS"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_point_down_the_layers(name: str) -> None:
    rank = LAYER_OF[name]
    upward = [
        f"{name}:{line} imports {target} ({LAYERS[LAYER_OF[target]][0]})"
        for target, line in _imports(name, MODULES[name])
        if target in LAYER_OF and LAYER_OF[target] > rank
    ]
    assert upward == [], f"{name} is in the layer {LAYERS[rank][0]!r}"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_only_the_fastapi_layer_imports_fastapi(name: str) -> None:
    uses = [line for target, line in _imports(name, MODULES[name]) if target == "fastapi"]
    assert name in FASTAPI_ALLOWED or uses == [], f"{name} imports fastapi at lines {uses}"
