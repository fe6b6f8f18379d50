"""Sphinx helpers of the harl_torchrl docs, built at build time so they cannot drift from the code.

* Class signatures: TorchRL's and tensordict's base classes define ``__new__`` (or a
  metaclass ``__call__``) taking ``*args, **kwargs``, which autodoc would show instead
  of the class's ``__init__``; the ``autodoc-process-signature`` hook shows
  ``__init__``'s signature.
* ``.. harl-autosummary:: <module>``: an autosummary table of the module's public
  names (its ``__all__``, else the public objects it defines).
* ``.. harl-config-table:: <algo name or dotted dataclass>``: the typed config
  dataclass's keys, types, defaults and descriptions (from the ``Attributes:``
  sections of the class and its bases).
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import inspect
import pkgutil
import re
import types
import typing
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.parsers.rst import Directive, directives
from docutils.statemachine import StringList
from sphinx.pycode import ModuleAnalyzer
from sphinx.util.inspect import stringify_signature
from sphinx.util.nodes import nested_parse_with_titles

_PASS_THROUGH = "(*args, **kwargs)"


def _init_signature(cls: type) -> str | None:
    init = cls.__init__
    if init is object.__init__:
        return None
    try:
        sig = inspect.signature(init)
    except (TypeError, ValueError):
        return None
    params = list(sig.parameters.values())[1:]  # drop self
    return stringify_signature(sig.replace(parameters=params), show_annotation=False, show_return_annotation=False)


def process_signature(app, what, name, obj, options, signature, return_annotation):
    """Replace a pass-through ``(*args, **kwargs)`` class signature by ``__init__``'s."""
    if what not in ("class", "exception") or not isinstance(obj, type):
        return None
    if signature is None or signature.replace(" ", "") != _PASS_THROUGH.replace(" ", ""):
        return None
    if getattr(obj, "_is_protocol", False):
        return "", return_annotation  # a typing.Protocol is implemented, never instantiated
    real = _init_signature(obj)
    if real is None:
        return None
    return real, return_annotation


def drop_type_docstring(app, what, name, obj, options, lines):
    """A module constant (a dict, a tuple) has no docstring of its own: do not show its type's."""
    if what in ("data", "attribute") and lines and not callable(obj):
        type_doc = inspect.getdoc(type(obj)) or ""
        if "\n".join(lines).strip() == type_doc.strip():
            lines.clear()


def public_names(module: Any) -> list[str]:
    """The module's ``__all__``, else the public classes and functions defined in it."""
    if hasattr(module, "__all__"):
        return list(module.__all__)
    names = []
    for name, value in vars(module).items():
        if name.startswith("_"):
            continue
        if (inspect.isclass(value) or inspect.isfunction(value)) and value.__module__ == module.__name__:
            names.append(name)
    return names


class HarlAutosummary(Directive):
    """``.. harl-autosummary:: harl_torchrl.objectives``: a table of the module's public names."""

    required_arguments = 1

    def run(self):
        module = importlib.import_module(self.arguments[0])
        lines = [f".. currentmodule:: {module.__name__}", "", ".. autosummary::", "   :nosignatures:", ""]
        lines += [f"   {name}" for name in public_names(module)]
        return _parse(self, lines)


def _defined_in(value: Any) -> str | None:
    module = getattr(value, "__module__", None)
    return module if (inspect.isclass(value) or inspect.isfunction(value)) else None


def _directive_for(value: Any) -> str:
    if inspect.isclass(value):
        return "autoexception" if issubclass(value, BaseException) else "autoclass"
    if inspect.isfunction(value):
        return "autofunction"
    return "autodata"


class HarlPackage(Directive):
    """``.. harl-package:: harl_torchrl.objectives``: a package's API page body.

    The package docstring, an autosummary table of its ``__all__``, then one section
    per public submodule (``:modules:`` gives their order; the others follow): the
    submodule's docstring and each of its names, documented under the package's
    import path (``harl_torchrl.objectives.HAPPOLoss``) when re-exported, else under
    the submodule's. Private submodules (``_batched``) are never documented.
    """

    required_arguments = 1
    option_spec = {"modules": directives.unchanged, "skip": directives.unchanged}

    def run(self):
        package = importlib.import_module(self.arguments[0])
        exported = public_names(package)
        order = (self.options.get("modules") or "").split()
        skip = set((self.options.get("skip") or "").split())
        found = [m.name for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith("_")]
        order += [m for m in found if m not in order]
        lines = [f".. automodule:: {package.__name__}", "   :no-members:", ""]
        lines += [".. autosummary::", "   :nosignatures:", ""]
        lines += [f"   {name}" for name in exported]
        lines.append("")
        placed = set()
        data = {n: getattr(package, n) for n in exported if _directive_for(getattr(package, n)) == "autodata"}
        for sub in order:
            if sub in skip:
                continue
            modname = f"{package.__name__}.{sub}"
            module = importlib.import_module(modname)
            lines += [modname, "-" * len(modname), "", f".. automodule:: {modname}", "   :no-members:", ""]
            for name in exported:
                value = getattr(package, name)
                if _defined_in(value) == modname:
                    lines += [f".. {_directive_for(value)}:: {package.__name__}.{name}", ""]
                    placed.add(name)
            comments = ModuleAnalyzer.for_module(modname).find_attr_docs()
            for name, value in data.items():
                if name not in placed and ("", name) in comments and getattr(module, name, None) is value:
                    lines += [f".. py:data:: {package.__name__}.{name}", ""]
                    lines += [f"   {line}" for line in comments["", name]]
                    placed.add(name)
            for name in public_names(module):
                value = getattr(module, name)
                if _defined_in(value) == modname and not (name in exported and getattr(package, name) is value):
                    lines += [f".. {_directive_for(value)}:: {modname}.{name}", ""]
        rest = [name for name in exported if name not in placed]
        if rest:
            lines += ["Other names", "-----------", ""]
            for name in rest:
                kind = "py:data" if name in data else _directive_for(getattr(package, name))
                lines += [f".. {kind}:: {package.__name__}.{name}", ""]
        return _parse(self, lines)


_ATTR_LINE = re.compile(r"^(\s*)(\w+):\s?(.*)$")


def _attributes_section(doc: str) -> dict[str, str]:
    """``name: text`` entries of a Google-style ``Attributes:`` section."""
    entries: dict[str, str] = {}
    if "Attributes:" not in doc:
        return entries
    current, indent = None, None
    for line in doc.split("Attributes:", 1)[1].splitlines():
        if not line.strip():
            continue
        lead = len(line) - len(line.lstrip())
        match = _ATTR_LINE.match(line)
        if match and (indent is None or lead == indent):
            indent, current = lead, match.group(2)
            entries[current] = match.group(3).strip()
        elif indent is not None and lead > indent and current is not None:
            entries[current] += " " + line.strip()
        else:
            break  # the next section
    return entries


def attribute_docs(cls: type) -> dict[str, str]:
    """Field descriptions from the ``Attributes:`` sections of ``cls`` and its bases (nearest first)."""
    docs: dict[str, str] = {}
    for klass in cls.__mro__:
        for name, text in _attributes_section(inspect.getdoc(klass) or "").items():
            docs.setdefault(name, text)
    return docs


def _type_name(tp: Any) -> str:
    if isinstance(tp, str):
        return tp
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return " | ".join(f"``{m.name}``" for m in tp)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " | ".join("``null``" if a is type(None) else _type_name(a) for a in typing.get_args(tp))
    if origin is not None:
        return f"``{tp}``".replace("typing.", "")
    return f"``{getattr(tp, '__name__', str(tp))}``"


def _default(field: dataclasses.Field) -> str:
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    else:
        return "(required)"
    if isinstance(value, enum.Enum):
        value = value.name
    if value is None:
        return "``null``"
    if isinstance(value, bool):
        return f"``{str(value).lower()}``"
    return f"``{value}``"


def config_schema(target: str) -> type:
    """An algo name registered with ``register_algo`` or a dotted path to a config dataclass."""
    if "." not in target:
        from harl_torchrl.config import ALGO_SCHEMAS

        if target not in ALGO_SCHEMAS:
            raise ValueError(f"harl-config-table: unknown algo {target!r}; registered: {sorted(ALGO_SCHEMAS)}")
        return ALGO_SCHEMAS[target]
    module, _, name = target.rpartition(".")
    return getattr(importlib.import_module(module), name)


class HarlConfigTable(Directive):
    """``.. harl-config-table:: happo``: the keys, types, defaults and meaning of a typed config."""

    required_arguments = 1
    option_spec = {"prefix": str}

    def run(self):
        schema = config_schema(self.arguments[0])
        prefix = self.options.get("prefix", "algo.")
        descriptions = attribute_docs(schema)
        hints = typing.get_type_hints(schema)
        lines = [
            ".. list-table::",
            "   :header-rows: 1",
            "   :widths: 22 18 14 46",
            "",
            "   * - key",
            "     - type",
            "     - default",
            "     - meaning",
        ]
        for field in dataclasses.fields(schema):
            if field.name == "name":
                continue
            text = descriptions.get(field.name, "")
            lines += [
                f"   * - ``{prefix}{field.name}``",
                f"     - {_type_name(hints.get(field.name, field.type))}",
                f"     - {_default(field)}",
                f"     - {text}" if text else "     -",
            ]
        caption = f"Generated from :class:`~{schema.__module__}.{schema.__name__}` at build time."
        return _parse(self, [*lines, "", caption])


BENCHMARKS = Path(__file__).resolve().parents[2] / "recipes" / "benchmarks" / "BENCHMARKS.rst"
_UNDERLINE = re.compile(r"^([-=~^\"'`#*+])\1+$")


def benchmark_sections(text: str) -> dict[str, list[str]]:
    """``{title: body lines}`` of every section of an RST file (bodies without their title)."""
    lines = text.splitlines()
    starts = [
        i
        for i in range(len(lines) - 1)
        if lines[i].strip() and _UNDERLINE.match(lines[i + 1]) and len(lines[i + 1]) >= len(lines[i].rstrip())
    ]
    sections = {}
    for k, start in enumerate(starts):
        end = starts[k + 1] if k + 1 < len(starts) else len(lines)
        sections[lines[start].strip()] = lines[start + 2 : end]
    return sections


def section_anchor(title: str) -> str:
    """The HTML id docutils gives a section with this RST title."""
    text = nodes.Text(title.replace("``", ""))
    return nodes.make_id(text.astext())


class HarlBenchmark(Directive):
    """``.. harl-benchmark:: <section title of recipes/benchmarks/BENCHMARKS.rst>``: that section's body, here.

    With ``:link:`` only a link to the section on the benchmarks page. A title that
    no longer exists fails the build with the list of titles, so pages cannot point
    at results that were renamed or removed.
    """

    required_arguments = 1
    final_argument_whitespace = True
    option_spec = {"link": directives.flag}

    def run(self):
        env = self.state.document.settings.env
        env.note_dependency(str(BENCHMARKS))
        title = self.arguments[0].strip()
        sections = benchmark_sections(BENCHMARKS.read_text())
        if title not in sections:
            raise self.error(f"no section {title!r} in {BENCHMARKS.name}; its sections: {list(sections)}")
        uri = env.app.builder.get_relative_uri(env.docname, "benchmarks") + "#" + section_anchor(title)
        link = nodes.paragraph()
        link += nodes.Text("Benchmarks: ")
        link += nodes.reference("", "", *self.state.inline_text(title, self.lineno)[0], refuri=uri, internal=True)
        if "link" in self.options:
            return [link]
        rubric = nodes.rubric(title, "", *self.state.inline_text(title, self.lineno)[0])
        body = _parse(self, sections[title])
        return [rubric, *body, link]


_BACKLINK = re.compile(r'href="([^"#]*)#([^"]+)">\[docs\]')


def fix_viewcode_backlinks(app, pagename, templatename, context, doctree):
    """Point each ``[docs]`` link of a source page at the object's real anchor.

    viewcode keeps one documented module name per source module, so in a module whose
    exported names are documented under the package (``harl_torchrl.modules.MLPTrunk``)
    and whose other public names under the module (``harl_torchrl.modules.mlp.orthogonal_``),
    half of its ``[docs]`` links would miss.
    """
    if not pagename.startswith("_modules/") or "body" not in context:
        return
    objects = app.env.get_domain("py").objects
    modname = pagename.removeprefix("_modules/").replace("/", ".")

    def repair(match):
        anchor = match.group(2)
        if anchor in objects:
            return match.group(0)
        parts = anchor.split(".")
        for i in range(1, len(parts)):  # the longest suffix that names an object of this module
            candidate = ".".join([modname, *parts[i:]])
            if candidate in objects:
                entry = objects[candidate]
                uri = app.builder.get_relative_uri(pagename, entry.docname)
                return f'href="{uri}#{entry.node_id}">[docs]'
        return match.group(0)

    context["body"] = _BACKLINK.sub(repair, context["body"])


def _parse(directive: Directive, lines: list[str]) -> list[nodes.Node]:
    container = nodes.container()
    source = directive.state_machine.get_source_and_line(directive.lineno)[0]
    nested_parse_with_titles(directive.state, StringList(lines, source=source), container)
    return container.children


def setup(app):
    app.connect("autodoc-process-signature", process_signature)
    app.connect("autodoc-process-docstring", drop_type_docstring)
    app.add_directive("harl-autosummary", HarlAutosummary)
    app.add_directive("harl-package", HarlPackage)
    app.add_directive("harl-config-table", HarlConfigTable)
    app.add_directive("harl-benchmark", HarlBenchmark)
    app.connect("html-page-context", fix_viewcode_backlinks)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
