"""Sphinx configuration: MyST Markdown pages, autodoc reference, generated tables (see _ext/)."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))

import ratelimit_core  # noqa: E402

project = "ratelimit-core"
author = "the ratelimit-core authors"
copyright = "the ratelimit-core authors"
release = ratelimit_core.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "ratelimit_docs",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_generated", ".venv", "Thumbs.db", ".DS_Store"]

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# The docstrings are reST: a single-backtick name is a cross-reference (see _ext/ratelimit_docs.py: a
# name that resolves links, a lower-case identifier that does not is an argument and shows as code).
default_role = "autoref"
nitpicky = True
nitpick_ignore_regex = [
    # Names from the standard library and third-party packages: no intersphinx (the build is offline).
    (r"py:.*", r"(typing|collections|collections\.abc|asyncio|types|enum|http|unittest|json|argparse|logging)\..*"),
    (r"py:.*", r"(hypothesis|django|redis|prometheus_client|ipaddress)\..*"),
    (r"py:.*", r"(WebsocketCommunicator|URLRouter|ImproperlyConfigured|CancelledError|Settings|Redis|RedisCluster)"),
    # Private types that public signatures mention: importable from their modules, not part of the API.
    (r"py:class", r"ratelimit_core\.(testing\.strategies\.KeyPlan|policies\.leases\.Slot)"),
    (r"py:class", r"ratelimit_core\.redis\.(commands\.ScriptArguments|coalesce\.ScriptCall|coalesce\.Coalescer)"),
    (r"py:.*", r"(Self|TracebackType|HTTPStatus|IntEnum|StrEnum|Exception|ValueError|Final|Literal)"),
    (r"py:.*", r"(Callable|Awaitable)"),
]

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True, "undoc-members": True}
autodoc_preserve_defaults = True
add_module_names = False
python_use_unqualified_type_names = True

html_theme = "furo"
html_title = f"ratelimit-core {release}"
html_static_path: list[str] = []
