"""A network defined in a learner's script, taken from its source without running the script.

A learner's script downloads its data at its top level, trains in a loop at the bottom, plots, and imports
packages cnnlab does not install (torchvision, matplotlib). `load_script` reads it with `ast` and takes:

- the model: the class named after the colon (`net.py:Net`), a function that returns a model
  (`net.py:make_model`), or a variable the script assigns a model to at its top level (`net.py:model`);
  with no name, the one `nn.Module` subclass that no other class of the file uses (lecture 11's `Net`, not
  its `InceptionA`; a class named *Loss counts only when alone), else the one variable assigned an `nn.*`
  module that is no loss (`model = nn.Sequential(...)`, not `criterion = nn.CrossEntropyLoss()`);
- what the model uses, transitively: the script's top-level classes, functions and assignments
  (constants such as `NUM_CLASSES = 10`, a dataclass config, `device = torch.device(...)`) and its imports
  from ALLOWED_MODULES (torch, numpy and standard modules that do nothing when imported);
- how the script builds the model, when it does so with arguments cnnlab can evaluate the same way
  (`model = NeuralNet(input_size, hidden_size, num_classes).to(device)`): `arguments`.

Those statements alone, with their own line numbers, are compiled into a fresh module and run. Nothing
else of the script runs: no top-level call, loop or print, no `if __name__ == "__main__":` block, no import
the model does not use. What the model needs but cannot have this way (an import from torchvision, a name
the script sets only as it runs) is one CnnlabError naming it and the line that uses it.
"""

import ast
import builtins
import hashlib
import inspect
import io
import linecache
import re
import symtable
import sys
import tokenize
import traceback
import types
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cnnlab import CnnlabError
from cnnlab.files import read_bounded

ALLOWED_MODULES = frozenset(
    {"torch", "numpy", "math", "random", "collections", "functools", "itertools", "typing", "dataclasses"}
    | {"operator", "numbers", "enum", "abc", "copy", "__future__"}
)
MAX_SCRIPT_BYTES = 1 << 20  # a long script is 50 kB
DEFINITIONS = (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
BLOCKS = (ast.If, ast.For, ast.AsyncFor, ast.While, ast.With, ast.AsyncWith, ast.Try, ast.Match)
NOT_RUN = "cnnlab does not load"
SCRIPT_MODULE = "cnnlab_script_"  # the prefix of the modules scripts are compiled into


@dataclass(frozen=True)
class ScriptModel:
    """A model of a script, ready to build: `build(**arguments)`."""

    path: Path
    name: str  # the class, function or variable
    kind: str  # "class", "function" or "variable"
    line: int
    build: Callable
    parameters: dict[str, inspect.Parameter]  # what `build` takes (none for a variable)
    arguments: dict[str, object]  # what the script itself passes when it builds the model
    taken: tuple[str, ...]  # every top-level name taken from the script, in source order
    source: bytes = field(repr=False)
    digest: str = ""  # SHA-256 of `source`

    @property
    def label(self) -> str:
        return f"{self.path.name}:{self.name}"

    def describe(self) -> str:
        """What was taken from the script, in one line."""
        uses = [name for name in self.taken if name != self.name]
        return (
            f"{self.name} ({self.kind}, line {self.line}) from {self.path}, with what it uses: "
            f"{', '.join(uses) or 'nothing else'}; nothing else of the script ran"
        )


@dataclass
class _Binding:
    """A top-level name: what binds it, where, and for an import the module it comes from."""

    node: ast.stmt
    line: int
    origin: str | None = None  # what an import binds: "torch.nn" (import torch.nn as nn), "torch.nn.Module"
    alias: ast.alias | None = None


def load_script(path: str | Path, name: str | None = None, *, source: bytes | None = None) -> ScriptModel:
    """The model `name` of the script at `path` (its bytes `source` when given, e.g. a run's trusted copy)."""
    path = Path(path)
    # A learner's deprecated calls (F.log_softmax(x) with no dim) are theirs to see when they run their script;
    # around cnnlab's answers they are noise, repeated by every command that opens the run. The stages replay
    # the same forward through torch.fx's interpreter, which the warnings then name as their caller.
    warnings.filterwarnings("ignore", category=UserWarning, module=SCRIPT_MODULE)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.fx\.interpreter")
    script = _Script(read_script(path) if source is None else source, path)
    target = name or script.default_target()
    return script.take(target)


def read_script(path: str | Path) -> bytes:
    """The bytes of the script at `path`, read bounded."""
    if not Path(path).exists():
        raise CnnlabError(f"no such file: {path}")
    return read_bounded(path, MAX_SCRIPT_BYTES)


def describe_failure(error: BaseException, path: str | Path) -> str:
    """ "line 24 (`x = self.fc(x)`): RuntimeError: ..." for an exception raised in the script's code."""
    message = (str(error).strip().splitlines() or [""])[0][:200]
    what = f"{type(error).__name__}: {message}" if message else type(error).__name__
    frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename == str(path)]
    if not frames:
        return what
    code = (frames[-1].line or "").strip()
    return f"line {frames[-1].lineno}{f' (`{code[:60]}`)' if code else ''}: {what}"


class _Script:
    def __init__(self, source: bytes, path: Path):
        self.path, self.source = path, source
        self.tree, self.text = _parse(_decode(source, path), path)
        self.bindings: dict[str, _Binding] = {}
        self.later: dict[str, int] = {}  # names set only inside a top-level block (if, for, with, try): first line
        self.stars: list[tuple[ast.stmt, str]] = []  # `from m import *` and m
        for statement in self.tree.body:
            self._bind(statement)
        try:
            top = symtable.symtable(self.text, str(path), "exec")
        except SyntaxError as e:  # what the parser lets through and the compiler does not (`return` at top level)
            raise CnnlabError(f"{path}, line {e.lineno}: syntax error: {e.msg}") from None
        self.tables = {(t.get_name(), t.get_lineno()): t for t in top.get_children()}

    def _bind(self, statement: ast.stmt) -> None:
        if isinstance(statement, (ast.Import, ast.ImportFrom)):
            for alias in statement.names:
                if alias.name == "*":
                    self.stars.append((statement, _imported_module(statement, alias)))
                else:
                    origin = _imported_name(statement, alias)
                    bound = alias.asname or alias.name.split(".")[0]
                    self.bindings[bound] = _Binding(statement, statement.lineno, origin, alias)
        elif isinstance(statement, DEFINITIONS):
            self.bindings[statement.name] = _Binding(statement, statement.lineno)
        elif isinstance(statement, (ast.Assign, ast.AnnAssign)) and statement.value is not None:
            names = _assigned(statement)
            if names is None or set(names) & _names_in([statement.value]):  # `a[0] = ...`; `model = model.to(x)`
                return
            for bound in names:
                self.bindings[bound] = _Binding(statement, statement.lineno)
        elif isinstance(statement, BLOCKS):
            for node in ast.walk(statement):
                if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                    self.later.setdefault(node.id, node.lineno)
                elif isinstance(node, DEFINITIONS):
                    self.later.setdefault(node.name, node.lineno)
                elif isinstance(node, ast.alias):  # `try: import torchvision`
                    self.later.setdefault(node.asname or node.name.split(".")[0], node.lineno)

    def default_target(self) -> str:
        """The one nn.Module class no other class uses, else the one variable assigned an nn.* module."""
        modules = [n for n, b in self.bindings.items() if isinstance(b.node, ast.ClassDef) and self._is_module(n)]
        used = {n for m in modules for n in self._reach(m) if n != m}
        tops = [m for m in modules if m not in used] or modules
        tops = [m for m in tops if not m.endswith("Loss")] or tops  # a FocalLoss(nn.Module) beside the model
        if not tops:
            tops = [n for n, b in self.bindings.items() if self._builds_torch_module(b)]
        if len(tops) == 1:
            return tops[0]
        if not tops:
            raise CnnlabError(
                f"{self.path} defines no nn.Module subclass nor a variable holding one: name the class, the "
                f"function that returns the model, or the variable, as {self.path}:Name"
            )
        listed = ", ".join(f"{n} (line {self.bindings[n].line})" for n in tops)
        raise CnnlabError(f"{self.path} defines {len(tops)} models: {listed}; name one, e.g. {self.path}:{tops[-1]}")

    def take(self, name: str) -> ScriptModel:
        """Compile what `name` needs into a fresh module and return the model's builder."""
        binding = self._target(name)
        node = binding.node
        kind = "class" if isinstance(node, ast.ClassDef) else "variable" if _assigned(node) else "function"
        value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign)) else None
        needed = self._closure(name, self._uses(binding) if value is None else _names_with_lines([value]))
        if value is None:
            needed[name] = binding
        call, call_needs = self._script_call(name, needed) if value is None else (None, {})
        module = self._compile(needed | call_needs)
        build = module.__dict__[name] if value is None else self._expression(value, module)
        parameters = {} if value is not None else _parameters(build, name)
        arguments = self._arguments(call, module, parameters) if call is not None else {}
        taken = tuple(sorted(needed, key=lambda n: needed[n].line))
        digest = hashlib.sha256(self.source).hexdigest()
        return ScriptModel(self.path, name, kind, node.lineno, build, parameters, arguments, taken, self.source, digest)

    def _target(self, name: str) -> _Binding:
        binding = self.bindings.get(name)
        if binding is None:
            where = f" only as it runs (line {self.later[name]})" if name in self.later else ""
            found = ", ".join(n for n, b in self.bindings.items() if isinstance(b.node, DEFINITIONS)) or "nothing"
            raise CnnlabError(f"{self.path} does not define {name}{where} (it defines: {found})")
        if binding.origin is not None:
            raise CnnlabError(
                f"{name} is imported from {binding.origin.rsplit('.', 1)[0]} (line {binding.line}) by {self.path}: "
                "cnnlab takes a model defined in the script itself"
            )
        return binding

    def _uses(self, binding: _Binding) -> dict[str, int]:
        """The top-level names a statement uses (evaluated now or when its functions run) -> first line used."""
        node = binding.node
        if binding.origin is not None:
            return {}
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            return _names_with_lines([node.value, getattr(node, "annotation", None)])
        assert isinstance(node, DEFINITIONS)
        outer: list[ast.AST | None] = list(node.decorator_list)  # evaluated where the class or def stands
        if isinstance(node, ast.ClassDef):
            outer += [*node.bases, *(k.value for k in node.keywords)]
        else:
            arguments = node.args
            outer += [*arguments.defaults, *arguments.kw_defaults, node.returns]
            outer += [a.annotation for a in (*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs)]
        uses = _names_with_lines(outer)
        table = self.tables.get((node.name, node.lineno))
        inner = set(_globals(table)) if table is not None else set()
        for found in ast.walk(node):
            if isinstance(found, ast.Name) and found.id in inner:
                uses.setdefault(found.id, found.lineno)
                uses[found.id] = min(uses[found.id], found.lineno)
        return uses

    def _closure(self, root: str, uses: dict[str, int]) -> dict[str, _Binding]:
        """Every top-level binding `root` needs, transitively; one CnnlabError for the first it cannot have."""
        needed: dict[str, _Binding] = {}
        pending = [(root, n, line) for n, line in uses.items()]
        while pending:
            user, name, line = pending.pop(0)
            if name in needed or name == root:
                continue
            binding = self.bindings.get(name)
            if binding is None:
                if hasattr(builtins, name) or name in ("__name__", "__file__"):
                    continue
                if any(_allowed(m) for _, m in self.stars):  # `from torch.nn import *` may define it
                    continue
                raise CnnlabError(self._missing(root, user, name, line, self._why_undefined(name)))
            if binding.origin is not None and not _allowed(binding.origin):
                raise CnnlabError(self._missing(root, user, name, line, self._why_import(binding)))
            needed[name] = binding
            pending += [(name, n, used) for n, used in self._uses(binding).items()]
        return needed

    def _missing(self, root: str, user: str, name: str, line: int, why: str) -> str:
        who = root if user == root else f"{user} (used by {root})"
        return f"{self.path}: {who} uses `{name}` (line {line}), {why}"

    def _why_import(self, binding: _Binding) -> str:
        assert isinstance(binding.node, (ast.Import, ast.ImportFrom)) and binding.alias is not None
        module = _imported_module(binding.node, binding.alias)
        return f"imported from {module} (line {binding.line}), which {NOT_RUN} (it loads only {_family()})"

    def _why_undefined(self, name: str) -> str:
        if name in self.later:
            return f"which the script sets only as it runs (line {self.later[name]}), and cnnlab does not run it"
        stars = [f"`from {m} import *` (line {s.lineno})" for s, m in self.stars]
        if stars:
            return f"which the script does not define (it may come from {', '.join(stars)}, which {NOT_RUN})"
        return "which the script does not define"

    def _reach(self, name: str) -> set[str]:
        """The local names `name` uses, transitively (no errors: for choosing the default model)."""
        seen, pending = set(), [name]
        while pending:
            current = pending.pop()
            if current in seen or current not in self.bindings:
                continue
            seen.add(current)
            pending += list(self._uses(self.bindings[current]))
        return seen

    def _is_module(self, name: str, seen: frozenset = frozenset()) -> bool:
        """Whether class `name` derives from a torch.nn class, directly or through the script's classes."""
        node = self.bindings[name].node
        assert isinstance(node, ast.ClassDef)
        for base in map(self._qualified, node.bases):
            if base is None:
                continue
            if base.startswith("torch.nn."):
                return True
            local = self.bindings.get(base)
            if local and isinstance(local.node, ast.ClassDef) and base not in seen:
                if self._is_module(base, seen | {name}):
                    return True
        return False

    def _builds_torch_module(self, binding: _Binding) -> bool:
        node = binding.node
        value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign)) else None
        if not isinstance(value, ast.Call) or _assigned(node) is None or len(_assigned(node) or ()) != 1:
            return False
        qualified = self._qualified(value.func) or ""
        return re.fullmatch(r"torch\.nn\.[A-Z]\w*(?<!Loss)", qualified) is not None  # nn.Sequential, not a loss

    def _qualified(self, expression: ast.expr) -> str | None:
        """`nn.Module` -> "torch.nn.Module" through the script's imports; a local name as it is."""
        if isinstance(expression, ast.Attribute):
            owner = self._qualified(expression.value)
            return owner and f"{owner}.{expression.attr}"
        if isinstance(expression, ast.Name):
            binding = self.bindings.get(expression.id)
            return binding.origin if binding and binding.origin else expression.id
        return None

    def _script_call(self, name: str, needed: dict[str, _Binding]) -> tuple[ast.Call | None, dict[str, _Binding]]:
        """The script's own call building the model, when all of them agree and cnnlab can evaluate it."""
        target = self.bindings[name].node
        inside = set(map(id, ast.walk(target)))
        calls = [
            node
            for node in ast.walk(self.tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == name
            if id(node) not in inside
        ]
        shapes = {ast.dump(ast.Call(ast.Name("f"), c.args, c.keywords)) for c in calls}
        if len(shapes) != 1 or not (calls[0].args or calls[0].keywords):
            return None, {}
        try:
            more = self._closure(name, _names_with_lines([*calls[0].args, *(k.value for k in calls[0].keywords)]))
        except CnnlabError:  # it passes something cnnlab cannot have (a local variable, `args.hidden`)
            return None, {}
        return calls[0], {n: b for n, b in more.items() if n not in needed}

    def _arguments(self, call: ast.Call, module: types.ModuleType, parameters: dict) -> dict[str, object]:
        """The script's call's arguments by parameter name (positional ones bound to the signature)."""
        collect = ast.Call(ast.Name("__cnnlab_arguments__", ast.Load()), call.args, call.keywords)
        expression = ast.fix_missing_locations(ast.copy_location(ast.Expression(collect), call))
        module.__dict__["__cnnlab_arguments__"] = lambda *a, **k: (a, k)
        try:
            positional, keywords = eval(compile(expression, str(self.path), "eval"), module.__dict__)
            bound = inspect.Signature(list(parameters.values())).bind_partial(*positional, **keywords)
        except Exception:  # the script's own call would fail the same way: the model's defaults stand
            return {}
        arguments: dict[str, object] = {}
        for key, value in bound.arguments.items():
            kind = parameters[key].kind
            if kind is inspect.Parameter.VAR_KEYWORD:
                arguments.update(value)
            elif kind is not inspect.Parameter.VAR_POSITIONAL:
                arguments[key] = value
        return arguments

    def _compile(self, needed: dict[str, _Binding]) -> types.ModuleType:
        """The needed statements alone, in source order, run once in a module named after their hash."""
        statements: dict[int, ast.stmt] = {}
        for binding in needed.values():
            node = binding.node
            if isinstance(node, (ast.Import, ast.ImportFrom)) and binding.alias is not None:
                node = ast.copy_location(_only(node, binding.alias), node)
            statements.setdefault(id(binding.node) if binding.alias is None else id(node), node)
        kept: list[ast.stmt] = [s for s in self.tree.body if isinstance(s, ast.ImportFrom) and s.module == "__future__"]
        kept += [s for s, m in self.stars if _allowed(m)]
        body = kept + sorted(statements.values(), key=lambda s: (s.lineno, s.col_offset))
        try:
            code = compile(ast.Module(body=body, type_ignores=[]), str(self.path), "exec")
        except SyntaxError as e:
            raise CnnlabError(f"{self.path}, line {e.lineno}: syntax error: {e.msg}") from None
        taken = ",".join(sorted(needed)).encode()
        digest = hashlib.sha256(self.source + str(self.path).encode() + taken).hexdigest()
        name = f"{SCRIPT_MODULE}{re.sub(r'[^0-9A-Za-z_]', '_', self.path.stem)}_{digest[:12]}"
        if name in sys.modules:  # the same statements of the same source: the same classes, not run twice
            return sys.modules[name]
        module = types.ModuleType(name)
        module.__file__ = str(self.path)
        sys.modules[module.__name__] = module  # dataclasses, pickle and inspect.getsource look modules up there
        lines = self.text.splitlines(keepends=True)
        linecache.cache[str(self.path)] = (len(self.text), None, lines, str(self.path))  # tracebacks, getsource
        try:
            exec(code, module.__dict__)
        except Exception as e:
            del sys.modules[name]
            raise CnnlabError(f"{self.path}: {describe_failure(e, self.path)}") from None
        return module

    def _expression(self, value: ast.expr, module: types.ModuleType) -> Callable:
        """A builder evaluating a variable's expression anew each call (a fresh model each time)."""
        expression = ast.fix_missing_locations(ast.copy_location(ast.Expression(value), value))
        code = compile(expression, str(self.path), "eval")
        return lambda: eval(code, module.__dict__)


def _decode(source: bytes, path: Path) -> str:
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(source).readline)
        return source.decode(encoding)
    except (SyntaxError, LookupError, UnicodeDecodeError):
        raise CnnlabError(f"{path} is not a Python script (not readable as text)") from None


def _parse(text: str, path: Path) -> tuple[ast.Module, str]:
    """The script's syntax tree and the text it was read from: a notebook export's `!pip install ...` and
    `%matplotlib inline` lines read as `pass` (same line numbers)."""
    try:
        return ast.parse(text, filename=str(path)), text
    except SyntaxError as e:
        error = e
    except ValueError as e:  # null bytes
        raise CnnlabError(f"{path} is not a Python script: {e}") from None
    shell = re.sub(r"(?m)^(\s*)[!%].*$", r"\1pass", text)
    if shell != text:
        try:
            return ast.parse(shell, filename=str(path)), shell
        except SyntaxError:
            pass
    raise CnnlabError(f"{path}, line {error.lineno}: syntax error: {error.msg}")


def _assigned(node: ast.stmt) -> list[str] | None:
    """The plain names an assignment binds (`a = b = ...`, `h, w = 28, 28`), or None for anything else."""
    if isinstance(node, ast.AnnAssign):
        return [node.target.id] if isinstance(node.target, ast.Name) else None
    if not isinstance(node, ast.Assign):
        return None
    names: list[str] = []
    for target in node.targets:
        items = target.elts if isinstance(target, ast.Tuple) else [target]
        if not all(isinstance(item, ast.Name) for item in items):
            return None
        names += [item.id for item in items]  # type: ignore[attr-defined]
    return names


def _names_in(expressions: Iterable[ast.AST | None]) -> set[str]:
    return set(_names_with_lines(expressions))


def _names_with_lines(expressions: Iterable[ast.AST | None]) -> dict[str, int]:
    """The names expressions read -> first line, less those a lambda or comprehension inside them binds."""
    found: dict[str, int] = {}
    bound: set[str] = set()
    for expression in expressions:
        for node in ast.walk(expression) if expression is not None else ():
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                found[node.id] = min(found.get(node.id, node.lineno), node.lineno)
            elif isinstance(node, ast.Name):
                bound.add(node.id)
            elif isinstance(node, ast.arg):
                bound.add(node.arg)
    return {name: line for name, line in found.items() if name not in bound}


def _globals(table: symtable.SymbolTable) -> Iterable[str]:
    """The global names a class or function body, or anything nested in it, reads."""
    for symbol in table.get_symbols():
        if symbol.is_global() and symbol.is_referenced():
            yield symbol.get_name()
    for child in table.get_children():
        yield from _globals(child)


def _imported_module(statement: ast.Import | ast.ImportFrom, alias: ast.alias) -> str:
    if isinstance(statement, ast.Import):
        return alias.name
    return "." * statement.level + (statement.module or "")


def _imported_name(statement: ast.Import | ast.ImportFrom, alias: ast.alias) -> str:
    """What the bound name refers to: "torch.nn" for `import torch.nn as nn`, "torch" for `import torch.nn`."""
    if isinstance(statement, ast.Import):
        return alias.name if alias.asname else alias.name.split(".")[0]
    return f"{_imported_module(statement, alias)}.{alias.name}"


def _allowed(module: str) -> bool:
    return not module.startswith(".") and module.split(".")[0] in ALLOWED_MODULES


def _family() -> str:
    return "torch, numpy and a few standard modules: math, typing, dataclasses, ..."


def _only(statement: ast.Import | ast.ImportFrom, alias: ast.alias) -> ast.stmt:
    """The import statement reduced to one of its names (`import torch, torchvision` -> `import torch`)."""
    if isinstance(statement, ast.Import):
        return ast.Import(names=[alias])
    return ast.ImportFrom(module=statement.module, names=[alias], level=statement.level)


def _parameters(build: Callable, name: str) -> dict[str, inspect.Parameter]:
    try:
        return dict(inspect.signature(build).parameters)
    except (TypeError, ValueError):
        raise CnnlabError(f"{name} is neither a class nor a function cnnlab can call") from None
