"""The documentation's own Sphinx extension: tables generated from the code, and reference checks.

- Generated pages (written to ``_generated/`` at the start of every build, included by the
  pages that show them): the Channels adapter's settings table from ``SETTINGS`` and
  ``SETTING_DOCS``, the wire-code tables from ``ratelimit_core.policies.codes``, and the CLI
  reference from the ``ratelimit`` command's argparse parser. A setting without a description
  (or a description without a setting) stops the build.
- ``autoref``, the default role of the docstrings: a single-backtick name links to the object
  it names (searched by its last dotted part, like ``:py:obj:`.Name```). A lower-case identifier
  that names nothing documented (an argument such as `cost`) shows as code; anything else that
  resolves nowhere is a broken cross-reference, which ``-n -W`` turns into a failed build.
- Type hints written against a private module (``ratelimit_core.backend.Backend``) link to
  the public name (``ratelimit_core.Backend``).
- Every public name the reference shows must have a docstring: one without is a warning.
"""

from __future__ import annotations

import argparse
import enum
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.domains.python import PyXRefRole
from sphinx.errors import ExtensionError
from sphinx.pycode import ModuleAnalyzer
from sphinx.util import logging

logger = logging.getLogger(__name__)

_PROJECT_MODULES = ("ratelimit_core", "ratelimit_channels")
# An argument, a field, an argument's attribute or a private module: `cost`, `options.timeout_ms`, `result()`.
_ARGUMENT_LIKE = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)*(\(\))?$")


# --- generated tables -------------------------------------------------------------------------


def _cell(text: str) -> str:
    """`text` safe inside a Markdown pipe-table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def settings_table() -> str:
    """The adapter's settings: Django setting, keyword, default, meaning (from `SETTINGS` and `SETTING_DOCS`)."""
    from ratelimit_channels.setting_docs import SETTING_DOCS
    from ratelimit_channels.settings import SETTINGS

    missing = sorted(set(SETTINGS) - set(SETTING_DOCS))
    stale = sorted(set(SETTING_DOCS) - set(SETTINGS))
    if missing or stale:
        raise ExtensionError(
            "ratelimit_channels.setting_docs.SETTING_DOCS must describe exactly the settings of SETTINGS: "
            f"add {missing} and remove {stale}"
        )
    rows = ["| Setting | Keyword | Default | Meaning |", "|---|---|---|---|"]
    for keyword, (setting, default) in SETTINGS.items():
        shown = "()" if default == () else repr(default)
        rows.append(f"| `{setting}` | `{keyword}` | `{_cell(shown)}` | {_cell(SETTING_DOCS[keyword])} |")
    return "\n".join(rows) + "\n"


def _attribute_docs(module: str) -> dict[str, str]:
    """The attribute docstrings (a string right after an assignment) of `module`, by qualified name."""
    analyzer = ModuleAnalyzer.for_module(module)
    return {".".join(key): " ".join(" ".join(lines).split()) for key, lines in analyzer.find_attr_docs().items()}


def _reference_to_text(text: str) -> str:
    """reST in a docstring (``code``, `name`) as Markdown code."""
    return re.sub(r"``([^`]+)``", r"`\1`", text)


def codes_tables() -> str:
    """The wire vocabulary: every `ErrorCode` and `CloseCode` with its meaning."""
    from ratelimit_core.policies import codes

    docs = _attribute_docs(codes.__name__)
    out = ["| `code` | Name | Meaning |", "|---|---|---|"]
    for member in codes.ErrorCode:
        meaning = _cell(_reference_to_text(_require(docs.get(f"ErrorCode.{member.name}"), member)))
        out.append(f"| `{member.value}` | `ErrorCode.{member.name}` | {meaning} |")
    out += ["", "| Close code | Name | When |", "|---|---|---|"]
    for close in codes.CloseCode:
        meaning = _cell(_reference_to_text(_require(docs.get(f"CloseCode.{close.name}"), close)))
        out.append(f"| `{close.value}` | `CloseCode.{close.name}` | {meaning} |")
    return "\n".join(out) + "\n"


def _require(text: str | None, member: enum.Enum) -> str:
    if not text:
        raise ExtensionError(f"ratelimit_core.policies.codes: {type(member).__name__}.{member.name} has no docstring")
    return text


def _option_row(action: argparse.Action) -> str:
    value = f" {action.metavar or action.dest.upper()}" if action.option_strings and action.nargs != 0 else ""
    names = ", ".join(f"`{name}{value}`" for name in action.option_strings) or f"`{action.metavar or action.dest}`"
    return f"| {names} | {_cell(action.help or '')} |"


def _subcommands(parser: argparse.ArgumentParser) -> Iterable[tuple[str, argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.items()


def cli_reference() -> str:
    """Usage and options of ``ratelimit`` and each of its commands, from the parser itself."""
    from ratelimit_core import cli

    # The defaults of --backend, --rate and --burst come from the environment: build without it.
    saved = {name: os.environ.pop(name, None) for name in (cli.BACKEND_ENV, cli.RATE_ENV, cli.BURST_ENV)}
    previous_columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"
    try:
        parser = cli._parser()
        sections = [_command_section("ratelimit", parser, level="##")]
        sections += [_command_section(f"ratelimit {name}", sub, level="##") for name, sub in _subcommands(parser)]
    finally:
        for name, value in saved.items():
            if value is not None:
                os.environ[name] = value
        if previous_columns is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = previous_columns
    return "\n".join(sections)


def _command_section(title: str, parser: argparse.ArgumentParser, level: str) -> str:
    usage = parser.format_usage().strip()
    rows = [
        _option_row(action)
        for action in parser._actions
        if not isinstance(action, argparse._HelpAction | argparse._SubParsersAction)
    ]
    lines = [f"{level} `{title}`", "", parser.description or "", "", "```text", usage, "```", ""]
    if rows:
        lines += ["| Option | Meaning |", "|---|---|", *rows, ""]
    return "\n".join(lines)


GENERATORS = {"settings.md": settings_table, "codes.md": codes_tables, "cli.md": cli_reference}


def write_generated(app: Sphinx) -> None:
    """Write every generated table under ``_generated/``, touching a file only when its text changed."""
    target = Path(app.srcdir) / "_generated"
    target.mkdir(exist_ok=True)
    for name, generate in GENERATORS.items():
        text = "<!-- Generated by docs/_ext/ratelimit_docs.py at every build: edit the code, not this file. -->\n\n"
        text += generate()
        path = target / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")


# --- the docstrings' default role -------------------------------------------------------------


class AutoRef(PyXRefRole):
    """``py:obj`` for a single-backtick name in a docstring.

    A name with a capital letter is searched by its last part (``:py:obj:`.Name```): it must
    resolve. A lower-case name (dotted or not) is looked up exactly (the current class and
    module first, so `bucket_consume` in a method's docstring is its sibling); if that fails it
    links to the one module-level function, class or constant of that name if there is exactly
    one, and otherwise it is an argument, a field or a private module and shows as code.
    """

    def run(self) -> tuple[list[nodes.Node], list[nodes.system_message]]:
        self.name = "py:obj"
        return super().run()

    def process_link(
        self, env: Any, refnode: Any, has_explicit_title: bool, title: str, target: str
    ) -> tuple[str, str]:
        title, target = super().process_link(env, refnode, has_explicit_title, title, target)
        soft = bool(_ARGUMENT_LIKE.match(target))
        # The Python domain searches fuzzily when the attribute is there at all, whatever its value.
        if soft:
            refnode.attributes.pop("refspecific", None)
        else:
            refnode["refspecific"] = True
        refnode["ratelimit_soft"] = soft
        return title, target


_TOP_LEVEL_TYPES = {"function", "class", "data", "module", "exception"}


def _python_domain(env: Any) -> Any:
    return env.domains["py"] if hasattr(env.domains, "__getitem__") else env.get_domain("py")


def _unique(app: Sphinx, env: Any, node: Any, name: str, contnode: nodes.Element, *, types: set[str] | None) -> Any:
    """A reference to the one documented object whose name ends in `name` (of `types`), or None."""
    matches = _python_domain(env).find_obj(env, None, None, name, "obj", 1)
    matches = [(full, entry) for full, entry in matches if types is None or entry.objtype in types]
    if len(matches) > 1:  # the same name in two packages: the one of the package that mentions it
        package = ".".join((node.get("py:module") or "").split(".")[:2])
        matches = [(full, entry) for full, entry in matches if package and full.startswith(package + ".")]
    if len(matches) != 1:
        return None
    full, entry = matches[0]
    from sphinx.util.nodes import make_refnode

    return make_refnode(app.builder, node["refdoc"], entry.docname, entry.node_id, contnode, full)


def resolve_missing(app: Sphinx, env: Any, node: Any, contnode: nodes.Element) -> nodes.Element | None:
    """Soft names fall back to code; project type hints through private modules link to the public name."""
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"]
    if node.get("ratelimit_soft"):
        return _unique(app, env, node, target.removesuffix("()"), contnode, types=_TOP_LEVEL_TYPES) or contnode
    last = target.rsplit(".", 1)[-1]
    if target.startswith(_PROJECT_MODULES) or (node.get("reftype") == "class" and "." not in target):
        return _unique(app, env, node, last, contnode, types=None)
    return None


# --- every public name has a docstring ----------------------------------------------------------


PUBLIC_MODULES = (
    "ratelimit_core",
    "ratelimit_core.fallback",
    "ratelimit_core.observe",
    "ratelimit_core.policies",
    "ratelimit_core.policies.codes",
    "ratelimit_core.prometheus",
    "ratelimit_core.redis",
    "ratelimit_core.testing",
    "ratelimit_channels",
    "ratelimit_channels.testing",
)
"""The modules whose ``__all__`` is the public API: each of their names must be in the reference."""


def require_reference(app: Sphinx, env: Any) -> None:
    """Warn about a public name (in a public module's ``__all__``) that the reference does not show."""
    import importlib

    documented = set(_python_domain(env).objects)
    shown = {name.rsplit(".", 1)[-1] for name in documented}
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            if f"{module_name}.{name}" not in documented and name not in shown:
                logger.warning(
                    "%s.%s is public (in __all__) but not in the API reference (docs/reference/)",
                    module_name,
                    name,
                    type="ratelimit",
                    subtype="reference",
                )


def _protocol_methods() -> frozenset[str]:
    from ratelimit_core import Backend

    return frozenset(name for name in vars(Backend) if not name.startswith("_"))


def require_docstring(  # noqa: PLR0917 (the signature of Sphinx's autodoc-process-docstring event)
    app: Sphinx, what: str, name: str, obj: object, options: Any, lines: list[str]
) -> None:
    """Warn about a public name without a docstring; a driver's protocol method points to the protocol."""
    short = name.rsplit(".", 1)[-1]
    if not any(line.strip() for line in lines) and what == "method" and short in _protocol_methods():
        lines[:] = [f"Implements `Backend.{short}`."]
        return
    if not any(line.strip() for line in lines) and not short.startswith("_"):
        logger.warning(
            "%s %s has no docstring: the API reference shows every public name's",
            what,
            name,
            type="ratelimit",
            subtype="docstring",
        )


# Aliases with the same name in two packages: a signature links to its own package's.
_SAME_NAME_ALIASES = {
    "ratelimit_core.testing": {"BackendFactory": "ratelimit_core.testing.machine.BackendFactory"},
    "ratelimit_channels": {"BackendFactory": "ratelimit_channels.backends.BackendFactory"},
}


def qualify_aliases(app: Sphinx, doctree: nodes.document) -> None:
    """Point a type hint naming such an alias at the one of the package it appears in."""
    from sphinx import addnodes

    for node in doctree.findall(addnodes.pending_xref):
        if node.get("refdomain") != "py":
            continue
        module = node.get("py:module") or ""
        for package, aliases in _SAME_NAME_ALIASES.items():
            full = aliases.get(node["reftarget"])
            if full and (module == package or module.startswith(package + ".")):
                node["reftarget"] = full


def setup(app: Sphinx) -> dict[str, object]:
    app.connect("doctree-read", qualify_aliases)
    app.add_role("autoref", AutoRef())
    app.connect("builder-inited", write_generated)
    app.connect("missing-reference", resolve_missing)
    app.connect("autodoc-process-docstring", require_docstring)
    app.connect("env-check-consistency", require_reference)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
