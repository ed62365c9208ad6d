"""Declarative YAML specs: ``kind: TrainJob | Endpoint | Dataset | Queue | Budget | KubeRayCluster |
SchedulerPolicy``.

Each kind maps 1:1 onto a public constructor (``ai.TrainJob``, ``ai.Endpoint``, ``ai.Queue``,
``ai.Budget``, ``ai.KubeRayClusterConfig``, ``ai.data``): the JSON Schema is *generated* from those
constructors' signatures and type annotations (``json_schema()``; shipped as
``spec.schema.json`` and checked against the code in the tests), and specs carry no defaults of
their own, so there is one set of defaults: the constructors'.

Errors name the file, the line and the field, before anything runs::

    cluster.yaml:7: TrainJob.wokers: unknown field 'wokers' (did you mean 'workers'?)

Data flow::

    file --safeyaml (SafeLoader subclass: limits, plain types, line marks)--> plain data
         --jsonschema--> checked data --cross-document checks (duplicates, queues, datasets)-->
         build() --> public objects --> apply()

A dry run (``build(doc, import_code=False)``) checks entry points with ``find_spec`` and ``ast``
and runs none of the user's code (``_entrypoint.py``). Limits and errors: ``docs/specs.md``.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import json
import os
import sys
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ainative import _entrypoint, safeyaml, errors

Path_ = tuple[Any, ...]

# kind -> (public name in `ainative`, parameter filled from a "module:function" string, or None)
KIND_TARGETS: dict[str, tuple[str, str | None]] = {
    "TrainJob": ("TrainJob", "train_fn"),
    "Endpoint": ("Endpoint", "model"),
    "Queue": ("Queue", None),
    "Budget": ("Budget", None),
    "KubeRayCluster": ("KubeRayClusterConfig", None),
    "SchedulerPolicy": ("PolicyConfig", None),
}
KINDS = ("TrainJob", "Endpoint", "Dataset", "Queue", "Budget", "KubeRayCluster", "SchedulerPolicy")
_SKIP_PARAMS = {"self", "args", "kwargs"}

RESOURCES_SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "cpus": {"type": "number", "minimum": 0},
        "memory_bytes": {"type": "integer", "minimum": 1},
        "accelerator": {"anyOf": [
            {"type": "string"},
            {"type": "object", "additionalProperties": False, "required": ["type"],
             "properties": {"type": {"type": "string"}, "count": {"type": "number"}}}]},
        "custom": {"type": "object", "additionalProperties": {"type": "number"}},
    },
}
DATASET_SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False, "required": ["kind", "name", "source"],
    "properties": {
        "kind": {"const": "Dataset"}, "name": {"type": "string"},
        "source": {"type": "object", "additionalProperties": False, "minProperties": 1,
                   "maxProperties": 1, "properties": {
                       "parquet": {"type": "string"},
                       "range": {"type": "object", "additionalProperties": False,
                                 "required": ["rows"], "properties": {
                                     "rows": {"type": "integer", "minimum": 0, "maximum": 2**40},
                                     "payload_bytes": {"type": "integer", "minimum": 0,
                                                       "maximum": 2**30}}}}},
        "shuffle": {"anyOf": [{"type": "boolean"}, {
            "type": "object", "additionalProperties": False,
            "properties": {"seed": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1},
                           "num_partitions": {"type": "integer", "minimum": 1,
                                              "maximum": 1_000_000}}}]},
    },
}


# ----------------------------------------------------------------------------- schema generation

def _target(kind: str) -> Any:
    import ainative

    return getattr(ainative, KIND_TARGETS[kind][0])


def _params(cls: Any) -> list[tuple[str, Any]]:
    """(name, annotation) of a constructor's keyword-capable parameters."""
    if dataclasses.is_dataclass(cls):
        hints = _hints(cls)
        return [(f.name, hints.get(f.name, Any)) for f in dataclasses.fields(cls) if f.init]
    sig = inspect.signature(cls.__init__ if inspect.isclass(cls) else cls)
    hints = _hints(cls.__init__ if inspect.isclass(cls) else cls)
    return [(name, hints.get(name, Any)) for name, p in sig.parameters.items()
            if name not in _SKIP_PARAMS and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def _required(cls: Any) -> list[str]:
    if dataclasses.is_dataclass(cls):
        return [f.name for f in dataclasses.fields(cls) if f.init
                and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    sig = inspect.signature(cls.__init__ if inspect.isclass(cls) else cls)
    return [n for n, p in sig.parameters.items() if n not in _SKIP_PARAMS
            and p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def _hints(obj: Any) -> dict[str, Any]:
    """Annotations resolved one by one, so that one unresolvable name (a TYPE_CHECKING import)
    degrades only that field to 'any' instead of failing the whole schema."""
    raw = dict(getattr(obj, "__annotations__", {}))
    if inspect.isclass(obj):
        raw = {}
        for klass in reversed(obj.__mro__):
            raw.update(getattr(klass, "__annotations__", {}))
    module = sys.modules.get(getattr(obj, "__module__", ""), None)
    namespace = {**vars(typing), **(vars(module) if module else {})}
    out = {}
    for name, ann in raw.items():
        if isinstance(ann, str):
            try:
                ann = eval(ann, namespace)  # annotations of our own code
            except Exception:
                ann = Any
        out[name] = ann
    return out


def _type_schema(tp: Any, seen: frozenset[Any] = frozenset()) -> dict[str, Any]:
    from ainative import resources as res

    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any or tp is object:
        return {}
    if tp is type(None) or tp is None:
        return {"type": "null"}
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [_type_schema(a, seen) for a in args]}
    if origin is typing.Literal:
        return {"enum": list(args)}
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer"}
    if tp is float:
        return {"type": "number"}
    if tp is str or tp is os.PathLike:
        return {"type": "string"}
    if tp is res.Resources:
        return RESOURCES_SCHEMA
    if tp is res.Accelerator:
        return RESOURCES_SCHEMA["properties"]["accelerator"]
    if origin in (dict, Mapping, typing.Mapping) or tp in (dict, Mapping):
        value = _type_schema(args[1], seen) if len(args) == 2 else {}
        return {"type": "object", "additionalProperties": value}
    if origin is tuple and args and args[-1] is not Ellipsis:
        return {"type": "array", "prefixItems": [_type_schema(a, seen) for a in args],
                "minItems": len(args), "maxItems": len(args)}
    if origin in (list, tuple, Sequence, typing.Sequence) or tp in (list, tuple):
        return {"type": "array", "items": _type_schema(args[0], seen) if args else {}}
    if origin is not None and getattr(origin, "__name__", "") == "Callable" or tp is Callable:
        return {"type": "string", "pattern": r"^[\w.]+:[\w.]+$"}
    if dataclasses.is_dataclass(tp) and tp not in seen:
        return _object_schema(tp, seen | {tp})
    return {}


def _object_schema(cls: Any, seen: frozenset[Any] = frozenset()) -> dict[str, Any]:
    props = {name: _type_schema(ann, seen) for name, ann in _params(cls)}
    schema: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": props}
    required = [r for r in _required(cls) if r in props]
    if required:
        schema["required"] = required
    return schema


def kind_schema(kind: str) -> dict[str, Any]:
    """The JSON Schema of one kind, generated from its public constructor."""
    if kind == "Dataset":
        return DATASET_SCHEMA
    cls = _target(kind)
    schema = _object_schema(cls)
    props = schema["properties"]
    required = set(schema.get("required", []))
    callable_param = KIND_TARGETS[kind][1]
    if callable_param:
        props.pop(callable_param, None)
        required.discard(callable_param)
        key = "entrypoint" if kind == "TrainJob" else "model"
        props[key] = {"type": "string", "pattern": r"^[\w.]+:[\w.]+$",
                      "description": "module:function, importable from the working directory"}
        required.add(key)
    if kind == "TrainJob" and "datasets" in props:
        props["datasets"] = {"type": "object", "additionalProperties": {"type": "string"},
                             "description": "name inside train_fn -> name of a Dataset document"}
    if kind == "Budget":
        props["queue"] = {"type": "string", "description": "the Queue this budget applies to"}
        required.add("queue")
    props["kind"] = {"const": kind}
    schema["required"] = sorted(required | {"kind"})
    return schema


def json_schema() -> dict[str, Any]:
    """The whole spec schema: one document is any of the kinds."""
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "ainative spec document",
            "oneOf": [{"$ref": f"#/$defs/{k}"} for k in KINDS],
            "$defs": {k: kind_schema(k) for k in KINDS}}


# ----------------------------------------------------------------------------- loading

@dataclasses.dataclass
class Document:
    """One YAML document of a spec file, with the line of every key."""

    kind: str
    data: dict[str, Any]
    file: str
    index: int
    lines: dict[Path_, int]

    @property
    def name(self) -> str:
        name = self.data.get("name")
        if name is None and self.kind == "TrainJob":
            name = _default_job_name(self.data.get("entrypoint"))
        return f"#{self.index}" if name is None else str(name)

    def line_of(self, path: Sequence[Any]) -> int:
        path = tuple(path)
        while path and path not in self.lines:
            path = path[:-1]
        return self.lines.get(path, self.lines.get((), 1))

    def error(self, path: Sequence[Any], message: str) -> errors.SpecError:
        field = ".".join(str(p) for p in path) or "(document)"
        return errors.SpecError(f"{self.file}:{self.line_of(path)}: {self.kind}.{field}: {message}"
                                if path else f"{self.file}:{self.line_of(path)}: {self.kind}: {message}",
                                file=self.file, line=self.line_of(path), field=field)


def parse(text: str | bytes, file: str = "<spec>") -> list[Document]:
    """YAML text -> documents with line numbers; schema-checked; cross references checked.

    The YAML is read by ``safeyaml`` (size, depth, node, alias and document limits; plain types
    only; string keys, no duplicates); every problem is a SpecError naming ``file`` and a line."""
    docs = []
    for i, (data, lines, first_line) in enumerate(safeyaml.load_documents(text, file)):
        lines.setdefault((), first_line)
        kind = data.get("kind") if isinstance(data, dict) else None
        doc = Document(kind=kind if isinstance(kind, str) else "",
                       data=data if isinstance(data, dict) else {}, file=file, index=i, lines=lines)
        if not isinstance(data, dict):
            raise doc.error((), "a spec document must be a mapping with a 'kind'")
        if kind is not None and not isinstance(kind, str):
            raise doc.error(("kind",), f"kind must be a string, one of {', '.join(KINDS)}; "
                            f"got {kind!r}")
        _check_kind(doc)
        _check_schema(doc)
        docs.append(doc)
    _check_duplicates(docs)
    _check_references(docs)
    return docs


def load(path: str | os.PathLike[str]) -> list[Document]:
    """Read and check one spec file: the one loader behind ``ainative apply``, ``up`` and
    ``submit``. Any problem (missing file, not UTF-8, bad YAML, over a limit, schema, duplicates)
    is a SpecError naming the file and line."""
    return parse(_read(path), str(path))


def load_yaml(path: str | os.PathLike[str]) -> list[Any]:
    """The plain data of each non-empty document of a YAML file, read with the spec loader's
    limits and rules (no tags, string keys, no duplicates) but no schema: for files in other
    formats (a bare cluster mapping, a list of jobs). Any problem is a SpecError with file:line."""
    return [data for data, _, _ in safeyaml.load_documents(_read(path), str(path))]


def _read(path: str | os.PathLike[str]) -> bytes:
    p = Path(path)
    try:
        with p.open("rb") as f:
            data = f.read(safeyaml.MAX_BYTES + 1)
    except OSError as exc:
        raise errors.SpecError(f"{p}: cannot read spec file: {exc.strerror or exc}", file=str(p),
                               line=0, field="(file)") from None
    if len(data) > safeyaml.MAX_BYTES:
        raise errors.SpecError(f"{p}:1: spec file is larger than {safeyaml.MAX_BYTES:,} bytes",
                               file=str(p), line=1, field="(file)")
    return data


def load_objects(path: str | os.PathLike[str], *, kinds: Sequence[str] | None = None,
                 import_code: bool = True) -> list[tuple[Document, Any]]:
    """Load a spec file and build the public object of every document of ``kinds`` (all but
    Dataset by default). With ``import_code=False`` entry points are only checked (nothing of the
    user's runs) and TrainJob/Endpoint get a placeholder callable: for dry runs."""
    docs = load(path)
    wanted = [d for d in docs if d.kind != "Dataset" and (kinds is None or d.kind in kinds)]
    return [(d, build(d, import_code=import_code)) for d in wanted]


def load_one(path: str | os.PathLike[str], kind: str, *, import_code: bool = True) -> Any:
    """The object of the one ``kind`` document of a spec file; SpecError unless there is exactly
    one."""
    found = load_objects(path, kinds=(kind,), import_code=import_code)
    if len(found) != 1:
        raise errors.SpecError(f"{path}:1: expected exactly one 'kind: {kind}' document, found "
                               f"{len(found)}", file=str(path), line=1, field="kind")
    return found[0][1]


def _check_kind(doc: Document) -> None:
    if doc.kind in KINDS:
        return
    if not doc.kind:
        raise doc.error((), f"missing 'kind:'; one of {', '.join(KINDS)}")
    close = difflib.get_close_matches(doc.kind, KINDS, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise errors.SpecError(f"{doc.file}:{doc.line_of(('kind',))}: unknown kind {doc.kind!r}{hint}; "
                           f"one of {', '.join(KINDS)}", file=doc.file,
                           line=doc.line_of(("kind",)), field="kind")


def _check_schema(doc: Document) -> None:
    import jsonschema

    schema = kind_schema(doc.kind)
    validator = jsonschema.Draft202012Validator(schema)
    found = sorted(validator.iter_errors(doc.data), key=lambda e: (len(e.absolute_path), str(e.path)))
    if not found:
        return
    err = _most_specific(found[0])
    path = tuple(err.absolute_path)
    if err.validator == "additionalProperties":
        allowed = list(err.schema.get("properties", {}))
        unknown = [k for k in err.instance if k not in allowed]
        key = unknown[0] if unknown else "?"
        close = difflib.get_close_matches(str(key), allowed, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise doc.error(path + (key,), f"unknown field {key!r}{hint}")
    if err.validator == "required":
        raise doc.error(path, err.message)
    raise doc.error(path, f"{err.message} (expected {_expected(err.schema)})")


def _most_specific(err: Any) -> Any:
    # anyOf/oneOf: report the branch that got furthest into the document
    while err.context:
        err = max(err.context, key=lambda e: len(e.absolute_path))
    return err


def _expected(schema: Mapping[str, Any]) -> str:
    if "type" in schema:
        return str(schema["type"])
    if "enum" in schema:
        return "one of " + ", ".join(map(repr, schema["enum"]))
    if "const" in schema:
        return repr(schema["const"])
    return "a valid value"


def _check_duplicates(docs: list[Document]) -> None:
    """Two documents that claim the same thing: a later one would silently win, so refuse."""
    seen: dict[tuple[str, str], Document] = {}
    for d in docs:
        key_field = "queue" if d.kind == "Budget" else "name"
        value = d.data.get(key_field)
        if d.kind == "TrainJob" and value is None:
            value = _default_job_name(d.data.get("entrypoint"))
        if not isinstance(value, str):
            continue
        key = (d.kind, value)
        first = seen.setdefault(key, d)
        if first is not d:
            what = (f"a second Budget for queue {value!r}" if d.kind == "Budget"
                    else f"a second {d.kind} named {value!r}")
            raise d.error((key_field,) if key_field in d.data else (),
                          f"{what}; the first is at {first.file}:{first.line_of((key_field,))}. "
                          "Keep one document per " + ("queue" if d.kind == "Budget" else "name"))


def _default_job_name(entrypoint: Any) -> str | None:
    """The name a TrainJob gets from its entry point when the spec gives none (as TrainJob does)."""
    import re

    if not isinstance(entrypoint, str) or ":" not in entrypoint:
        return None
    raw = re.sub(r"[^A-Za-z0-9._-]+", "-", entrypoint.rpartition(".")[2].rpartition(":")[2])
    return raw.strip("-._") or "train"


def _check_references(docs: list[Document]) -> None:
    queues = {d.data["name"] for d in docs if d.kind == "Queue" and "name" in d.data}
    datasets = {d.data["name"] for d in docs if d.kind == "Dataset"}
    for d in docs:
        queue = d.data.get("queue")
        if queue is not None and d.kind in ("TrainJob", "Endpoint", "Budget") and queue not in queues:
            known = _live_queues()
            if queue not in known:
                close = difflib.get_close_matches(str(queue), sorted(queues | known), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise d.error(("queue",), f"queue {queue!r} is not defined in this file or in the "
                              f"cluster's scheduler{hint}; add a 'kind: Queue' document")
        for key, ref in (d.data.get("datasets") or {}).items() if d.kind == "TrainJob" else ():
            if ref not in datasets:
                raise d.error(("datasets", key), f"no 'kind: Dataset' document named {ref!r}")


def _live_queues() -> set[str]:
    """Queues of an already-configured scheduler in this process, if any (no Ray started)."""
    try:
        from ainative import scheduling

        names = getattr(scheduling, "configured_queue_names", None)
        return set(names()) if callable(names) else set()
    except Exception:
        return set()


# ----------------------------------------------------------------------------- building

def import_callable(text: str, doc: Document | None = None, field: str = "entrypoint") -> Any:
    """``"package.module:function"`` -> the function (the working directory is importable). The
    one importer behind specs, `ainative train --entrypoint` and `ainative serve --model`."""
    try:
        return _entrypoint.resolve(text, field)
    except _entrypoint.EntrypointError as exc:
        if doc is not None:
            raise doc.error((field,), str(exc)) from None
        raise errors.ConfigError(str(exc), field=field, value=text) from None


def check_callable(text: str, doc: Document | None = None, field: str = "entrypoint") -> Any:
    """Like ``import_callable`` but runs no user code: the module is found with
    ``importlib.util.find_spec`` and the attribute looked up in its source. Returns a placeholder
    function with the attribute's name (so that default names match a real build)."""
    try:
        name = _entrypoint.check(text, field)
    except _entrypoint.EntrypointError as exc:
        if doc is not None:
            raise doc.error((field,), str(exc)) from None
        raise errors.ConfigError(str(exc), field=field, value=text) from None

    def placeholder(*args: Any, **kwargs: Any) -> Any:
        raise errors.SpecError(f"{text} was only checked (dry run), not imported")

    placeholder.__name__ = placeholder.__qualname__ = name
    placeholder.__module__ = text.partition(":")[0]   # so import paths written from it are the user's
    return placeholder


def _convert(value: Any, tp: Any, doc: Document, path: Path_) -> Any:
    from ainative import resources as res

    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if value is None:
        return None
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        if isinstance(value, dict):
            options.sort(key=lambda a: not (dataclasses.is_dataclass(a) or a is res.Resources))
        if isinstance(value, list):
            options.sort(key=lambda a: typing.get_origin(a) not in (tuple, list))
        return _convert(value, options[0], doc, path) if options else value
    if tp is res.Accelerator:
        acc = value if isinstance(value, dict) else {"type": value}
        return _construct(res.Accelerator, acc, doc, path)
    if tp is res.Resources and isinstance(value, dict):
        fields = dict(value)
        if "accelerator" in fields:
            fields["accelerator"] = _convert(fields["accelerator"], res.Accelerator, doc,
                                             path + ("accelerator",))
        return _construct(res.Resources, fields, doc, path)
    if dataclasses.is_dataclass(tp) and isinstance(value, dict):
        return build_object(tp, value, doc, path)
    if origin is tuple and isinstance(value, list) and not (len(args) == 2 and args[1] is Ellipsis):
        return tuple(_convert(v, a, doc, path + (i,)) for i, (v, a) in enumerate(zip(value, args)))
    if origin in (list, tuple, Sequence) and isinstance(value, list) and args:
        items = [_convert(v, args[0], doc, path + (i,)) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    return value


def _construct(cls: Any, kwargs: dict[str, Any], doc: Document, path: Path_) -> Any:
    try:
        return cls(**kwargs)
    except errors.ConfigError as exc:
        field = exc.details.get("field")
        where = path + (field,) if field and field in kwargs else path
        raise doc.error(where, str(exc)) from None
    except TypeError as exc:
        raise doc.error(path, str(exc)) from None


def build_object(cls: Any, data: Mapping[str, Any], doc: Document, path: Path_ = ()) -> Any:
    """Construct ``cls`` from spec data, converting nested values by the type annotations."""
    hints = dict(_params(cls))
    kwargs = {k: _convert(v, hints.get(k, Any), doc, path + (k,)) for k, v in data.items()}
    return _construct(cls, kwargs, doc, path)


def build(doc: Document, datasets: Mapping[str, Any] | None = None, *,
          import_code: bool = True) -> Any:
    """The public object for one document (Dataset documents are built by ``build_dataset``).
    ``import_code=False`` checks entry points without importing them (see ``check_callable``)."""
    load_fn = import_callable if import_code else check_callable
    if doc.kind == "Dataset":
        raise doc.error((), "Dataset documents need a Ray cluster; use build_dataset()")
    data = {k: v for k, v in doc.data.items() if k != "kind"}
    cls = _target(doc.kind)
    if doc.kind == "TrainJob":
        data["train_fn"] = load_fn(data.pop("entrypoint"), doc, "entrypoint")
        if "datasets" in data:
            refs = data.pop("datasets")
            if datasets is not None:
                data["datasets"] = {k: datasets[v] for k, v in refs.items()}
    elif doc.kind == "Endpoint":
        data["model"] = load_fn(data["model"], doc, "model")
    elif doc.kind == "Budget":
        data.pop("queue", None)
    return build_object(cls, data, doc)


def build_dataset(doc: Document) -> Any:
    from ainative import data as ai_data

    source = doc.data["source"]
    if "parquet" in source:
        ds = ai_data.read_parquet(source["parquet"])
    else:
        ds = ai_data.range(source["range"]["rows"],
                           payload_bytes=source["range"].get("payload_bytes", 0))
    shuffle = doc.data.get("shuffle")
    if shuffle:
        ds = ds.shuffle(**(shuffle if isinstance(shuffle, dict) else {}))
    return ds


def schema_file() -> Path:
    return Path(__file__).with_name("spec.schema.json")


def write_schema() -> Path:
    path = schema_file()
    path.write_text(json.dumps(json_schema(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path
