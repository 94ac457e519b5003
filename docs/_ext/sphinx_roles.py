"""A griffe extension: the package's Sphinx-style docstring roles as mkdocstrings links.

The docstrings say ``:class:`AuthStore``` and ``:func:`~fastapi_authkit.create_issuer```, as
Python docstrings usually do; mkdocstrings renders Markdown, where such a role would show up
verbatim. This rewrites each role, when the package is loaded for the docs, into a
cross-reference to the entry the reference pages render for it (``::: fastapi_authkit.X``,
``::: fastapi_authkit.events.X``...), or into plain code when they render none (the
reference does not render internals, and a link to nothing fails ``mkdocs build --strict``).
A reST literal-block marker (a paragraph ending in ``::``) becomes a single colon; the
indented block after it is a code block in Markdown as well.

Loaded by mkdocs.yml (``extensions: [docs/_ext/sphinx_roles.py]``); not part of the package.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import griffe

# :role:`target` or :role:`~dotted.target` (the tilde shows only the last component).
ROLE = re.compile(r":(?:class|func|meth|attr|exc|data|mod|obj):`(~?)([\w.]+)`")
LITERAL_MARKER = re.compile(r"::$", re.MULTILINE)
# The pages whose "::: path" entries are the link targets.
REFERENCE = Path(__file__).resolve().parent.parent / "reference"
ENTRY = re.compile(r"^::: (fastapi_authkit(?:\.\w+)*)$", re.MULTILINE)


class SphinxRoles(griffe.Extension):
    """Rewrite roles in every docstring of the loaded package."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        if pkg.path != "fastapi_authkit":
            return
        public = public_paths(pkg)
        for obj in walk(pkg):
            if obj.docstring is not None:
                obj.docstring.value = rewrite(obj.docstring.value, obj, public)


def public_paths(pkg: griffe.Module) -> dict[str, str]:
    """Canonical path (``fastapi_authkit.config.create_store``) -> the path of its entry on
    the reference pages (``fastapi_authkit.create_store``) for every entry they render."""
    public: dict[str, str] = {}
    for page in sorted(REFERENCE.glob("*.md")):
        for path in ENTRY.findall(page.read_text()):
            if path == pkg.path:
                continue
            member = pkg[path.removeprefix(f"{pkg.path}.")]
            if isinstance(member, griffe.Module):  # a module's page part, not a link target
                continue
            target = member.target_path if isinstance(member, griffe.Alias) else member.path
            public.setdefault(target, path)
    return public


def walk(obj: griffe.Object) -> list[griffe.Object]:
    """``obj`` and every object defined inside it (aliases are documented where defined)."""
    found = [obj]
    for member in obj.members.values():
        if not member.is_alias:
            found.extend(walk(member))  # type: ignore[arg-type]
    return found


def rewrite(text: str, obj: griffe.Object, public: dict[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        short, target = match.group(1) == "~", match.group(2)
        label = target.rsplit(".", 1)[-1] if short else target
        link = public_target(resolve(target, obj), public)
        return f"[`{label}`][{link}]" if link else f"`{label}`"

    return LITERAL_MARKER.sub(":", ROLE.sub(replace, text))


def resolve(target: str, obj: griffe.Object) -> str:
    """The canonical path a role's target names, seen from the module ``obj`` is in."""
    if target.startswith("fastapi_authkit"):
        return target
    module = obj if isinstance(obj, griffe.Module) else obj.module
    head, _, rest = target.partition(".")
    member = module.members.get(head)
    if member is None:
        return target
    base = member.target_path if isinstance(member, griffe.Alias) else member.path
    return f"{base}.{rest}" if rest else base


def public_target(path: str, public: dict[str, str]) -> str | None:
    """The public path of ``path`` (or of its class, for a method), if it has one."""
    public_names = set(public.values())
    owner, _, attribute = path.rpartition(".")
    for candidate, suffix in ((path, ""), (owner, f".{attribute}")):
        if candidate in public:
            return public[candidate] + suffix
        if candidate in public_names:
            return candidate + suffix
    return None
