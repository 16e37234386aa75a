"""Sphinx configuration: the API reference from the docstrings, the guides in Markdown.

Build: ``python -m sphinx -W -n docs docs/_build`` (tests/docs/test_sphinx_build.py
runs it with warnings as errors).  Nothing is fetched from the network: the
standard library's inventory is Debian's ``python3.11-doc``.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import pkgutil
import sys
import textwrap
import typing
from pathlib import Path

import isolate
from sphinx import addnodes
from sphinx.util import logging
from sphinx.util.inspect import stringify_signature

project = "isolate"
author = "the isolate authors"
copyright = "the isolate authors"
release = version = isolate.__version__

extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.intersphinx"]
source_suffix = {".md": "markdown"}
root_doc = "index"
# docs/benchmarks holds measured results (their own Markdown, not pages); docs/man
# the generated man pages.
exclude_patterns = ["_build", "benchmarks", "man"]
HERE = Path(__file__).parent

# Guides link to their sections: ``[x](guide.md#a-heading)``.
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence", "deflist"]

nitpicky = True
nitpick_ignore = [
    # Not a stable interface (``spawn(ops=)`` says so), shown as its name only.
    ("py:class", "isolate._plan.Op"),
    # getrusage()'s result type: the Python documentation has no entry for it.
    ("py:class", "resource.struct_rusage"),
    # Node.from_json's TypeVar (``type[N] -> N``: the class it is called on).
    ("py:class", "isolate.oci._schema.N"),
    # process_spec(out=): where the OCI converter collects what it cannot apply.
    ("py:class", "isolate.oci.convert._Out"),
    # Image.with_config's "leave this field as the image has it" default.
    ("py:class", "isolate.images.image._Keep"),
]
# Standard-library references resolve offline, through Debian's python3.11-doc.
intersphinx_mapping = {
    "python": ("https://docs.python.org/3", "/usr/share/doc/python3.11/html/objects.inv"),
}

autodoc_typehints = "signature"
autodoc_typehints_format = "short"
python_use_unqualified_type_names = True
autodoc_member_order = "bysource"
autodoc_class_signature = "mixed"
autodoc_preserve_defaults = True
# Every public member is listed, documented or not: ``check_docstring`` warns
# for one without a docstring (Sphinx would leave it out silently).
autodoc_default_options = {"undoc-members": True, "show-inheritance": True}

html_theme = "alabaster"
html_title = f"isolate {release}"

logger = logging.getLogger("isolate.docs")

# --- annotations the package writes for type checkers only ---------------------------
#
# The package imports ``typing`` and the names its annotations use only under
# ``if TYPE_CHECKING:`` (TYPE_CHECKING being a module-level False, for start-up
# speed), so autodoc could not evaluate its annotations.  Run those blocks into
# each module once here (names already bound at run time are kept), so that
# signatures show resolved types and link to them.

#: Type aliases the public signatures use (strings at run time), by definition:
#: each is documented on the page of the module named.
TYPE_ALIASES = {
    "str | bytes | os.PathLike[str] | os.PathLike[bytes]": "isolate.process.StrPath",
    "None | int | IO[Any]": "isolate.process.Stdio",
    "str | os.PathLike[str]": "isolate.rootfs.StrPath",
    "BindMount | TmpfsMount | SpecialMount": "isolate.config.AnyMount",
}


class TypeAlias:
    """A type alias in an evaluated annotation: shown, and linked, by its documented name."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name

    def __call__(self) -> None:      # typing.Union takes callables only
        pass

    def __or__(self, other: object) -> object:
        return typing.Union[self, other]

    def __ror__(self, other: object) -> object:
        return typing.Union[other, self]


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _resolve_type_checking(module: object) -> None:
    path = getattr(module, "__file__", None)
    if not path or not path.endswith(".py"):
        return
    ns = vars(module)
    tree = ast.parse(Path(path).read_text(), path)
    scratch = dict(ns)
    for node in tree.body:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for stmt in node.body:
                code = compile(ast.Module([stmt], []), path, "exec")
                try:
                    exec(code, scratch)
                except Exception as e:  # a name for type checkers only (a stub's)
                    logger.debug("%s: %s", module.__name__, e)
    for name, value in scratch.items():
        if getattr(value, "__module__", None) == "typing_extensions" and hasattr(typing, name):
            value = getattr(typing, name)      # typing.Unpack is in the Python inventory
        ns.setdefault(name, value)
    for name, value in list(ns.items()):
        if isinstance(value, str) and value in TYPE_ALIASES:
            ns[name] = TypeAlias(TYPE_ALIASES[value])


def _import_all() -> None:
    for info in pkgutil.walk_packages(isolate.__path__, "isolate."):
        if not info.name.endswith(".__main__"):
            importlib.import_module(info.name)
    for name, module in list(sys.modules.items()):
        if name == "isolate" or name.startswith("isolate."):
            _resolve_type_checking(module)


_import_all()


# --- record signatures ----------------------------------------------------------------
#
# isolate's records (``_record.dataclass``) have an ``__init__(*args, **kw)``:
# show the fields as the signature instead, as for a standard dataclass.

def _fields(cls: type) -> list[object]:
    if "__record_fields__" in vars(cls):
        return list(cls.__record_fields__.values())
    return list(dataclasses.fields(cls)) if dataclasses.is_dataclass(cls) else []


class _Source:
    """A default shown as written in the class (``0o022``, ``DEFAULT_NAMESPACES``)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _defaults_as_written(cls: type) -> dict[str, str]:
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    source = textwrap.dedent(source)
    tree = ast.parse(source)
    out = {}
    for stmt in tree.body[0].body:
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value:
            value = stmt.value
            if (isinstance(value, ast.Call) and getattr(value.func, "id", "") == "field"):
                continue        # field(default_factory=...): shown as the factory's call
            out[stmt.target.id] = ast.get_source_segment(source, value) or ast.unparse(value)
    return out


def _record_signature(cls: type) -> str:
    module = sys.modules[cls.__module__]
    written = _defaults_as_written(cls)
    params = []
    fields = [f for f in _fields(cls) if f.init]
    for f in sorted(fields, key=lambda f: f.kw_only is True):
        ann = f.type
        if isinstance(ann, str):
            ann = eval(ann, vars(module))
        if not _missing(f.default):
            default = _Source(written[f.name]) if f.name in written else f.default
        elif not _missing(f.default_factory):
            default = _Factory(f.default_factory)
        else:
            default = inspect.Parameter.empty
        kind = (inspect.Parameter.KEYWORD_ONLY if f.kw_only is True else
                inspect.Parameter.POSITIONAL_OR_KEYWORD)
        params.append(inspect.Parameter(f.name, kind, default=default, annotation=ann))
    sig = inspect.Signature(params)
    return stringify_signature(sig, show_return_annotation=False, unqualified_typehints=False)


def _missing(value: object) -> bool:
    return value is dataclasses.MISSING or value is isolate._record.MISSING


class _Factory:
    def __init__(self, factory: object) -> None:
        self.factory = factory

    def __repr__(self) -> str:
        return f"{getattr(self.factory, '__name__', 'factory')}()"


def class_signature(app, what, name, obj, options, signature, return_annotation):
    if what not in ("class", "exception") or not isinstance(obj, type):
        return None
    if _fields(obj):
        return _record_signature(obj), None
    try:
        params = inspect.signature(obj).parameters
    except (TypeError, ValueError):
        return None
    if params and all(p.startswith("_") for p in params):
        return "", None         # no public constructor (Cgroup: use Cgroup.create)
    return None


def _field_of_record(module: str, fullname: str) -> bool:
    """Whether ``module``.``fullname`` names a field of a record (or dataclass)."""
    owner_path, _, name = fullname.rpartition(".")
    if not owner_path:
        return False
    owner: object = sys.modules.get(module)
    for part in owner_path.split("."):
        owner = getattr(owner, part, None)
    return isinstance(owner, type) and name in {f.name for f in _fields(owner)}


def drop_record_fields(app, doctree):
    # A record's fields are its signature's parameters: not listed again as
    # attributes (autodoc lists them, without saying which class they are of).
    for node in list(doctree.findall(addnodes.desc)):
        if node.get("domain") == "py" and node.get("objtype") == "attribute":
            sig = node.children[0]
            if _field_of_record(sig.get("module", ""), sig.get("fullname", "")):
                node.parent.remove(node)


def _private(cls: object) -> bool:
    origin = getattr(cls, "__origin__", cls)
    return any(part.startswith("_") for part in
               (*getattr(origin, "__module__", "").split("."), getattr(origin, "__qualname__", "_")))


def public_bases(app, name, obj, options, bases):
    # "Bases:" names public classes: a private base is replaced by its own bases.
    out = []
    todo = list(bases)
    while todo:
        base = todo.pop(0)
        origin = getattr(base, "__origin__", base)
        if origin is object or origin is typing.Generic or origin in out:
            # object is every class's base; Generic is for type checkers
            continue
        if _private(base):
            todo[:0] = getattr(origin, "__bases__", ())
        else:
            out.append(base)
    bases[:] = out or [object]


# --- a public name without a docstring is a warning ----------------------------------

def check_docstring(app, what, name, obj, options, lines):
    if what == "module":
        return
    short = name.rsplit(".", 1)[-1]
    if short.startswith("_"):
        return
    if what == "attribute" and any(_field_of_record(name[:i], name[i + 1:])
                                   for i in range(len(name)) if name[i] == "."):
        return                  # described by its class (see drop_record_fields)
    if not any(line.strip() for line in lines):
        logger.warning("%s %s has no docstring", what, name, type="isolate", subtype="undocumented")


# --- every public name is documented --------------------------------------------------

def _lookup(dotted: str) -> object:
    """The object a documented name names (LookupError: none, e.g. a ``py:type``)."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        module = sys.modules.get(".".join(parts[:i]))
        if module is not None:
            obj: object = module
            try:
                for part in parts[i:]:
                    obj = getattr(obj, part)
            except AttributeError:
                raise LookupError(dotted) from None
            return obj
    raise LookupError(dotted)


def _names(dotted: str, value: object) -> bool:
    try:
        return _lookup(dotted) is value
    except LookupError:
        return False


def check_all_documented(app, env):
    """Warn for a name in a documented module's ``__all__`` that no page documents."""
    domain = env.domains["py"]
    documented: dict[int, str] = {}
    names = set()
    by_name: dict[str, list[str]] = {}
    for name, dispname, objtype, docname, anchor, prio in domain.get_objects():
        names.add(name)
        by_name.setdefault(name.rpartition(".")[2], []).append(name)
        if objtype != "module":
            try:
                documented.setdefault(id(_lookup(name)), name)
            except LookupError:
                pass
    modules = sorted(domain.modules)
    if not modules:
        logger.warning("no module is documented", type="isolate", subtype="undocumented")
    for modname in modules:
        module = importlib.import_module(modname)
        for name in getattr(module, "__all__", ()):
            full = f"{modname}.{name}"
            if full in names:
                continue
            value = getattr(module, name)
            # Documented where it is defined, or under its own name elsewhere (a
            # re-export); small ints and None are one object everywhere, so they
            # count only under their own name.
            if id(value) in documented and not (value is None or isinstance(value, int) and
                                                  -5 <= value <= 256):
                continue
            if any(_names(other, value) for other in by_name.get(name, ())):
                continue
            logger.warning("%s is in %s.__all__ but not documented", full, modname,
                           type="isolate", subtype="undocumented")


def without_missing_guides(app, docname, source):
    # index.md includes docs/guides/*.md by a glob; a glob that matches nothing is
    # a warning, so the reference alone (no guides yet) drops those entries.
    if docname == "index" and not any((HERE / "guides").glob("*.md")):
        source[0] = "\n".join(line for line in source[0].splitlines()
                              if not line.startswith("guides/"))


def setup(app):
    app.connect("autodoc-process-signature", class_signature)
    app.connect("source-read", without_missing_guides)
    app.connect("doctree-read", drop_record_fields)
    app.connect("env-check-consistency", check_all_documented)
    app.connect("autodoc-process-bases", public_bases)
    app.connect("autodoc-process-docstring", check_docstring)
