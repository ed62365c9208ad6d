"""Hostile-input-safe YAML for specs, KubeRay files and cluster files: a ``yaml.SafeLoader`` subclass
with limits and line marks.

Every spec file goes through here before anything else looks at it::

    bytes --size limit--> utf-8 decode --SpecLoader.compose (depth, node, alias, document limits)-->
          node trees --walk (expansion limit, cycle check, str keys, no duplicates, plain tags)-->
          (plain data, {path: line}) per document

Each node of the tree is walked once per place it is used, so an alias costs what it expands to
and the expansion limit stops an alias bomb ("billion laughs") after a bounded amount of work, long
before it builds anything big. Only the plain YAML types are accepted (mapping, sequence, string,
int, float, bool, null, plus ``<<`` merge keys): tags such as ``!!python/object``, ``!!set`` or
``!!binary`` are refused, as are non-string and duplicate keys. Every failure is a ``SpecError``
naming the file and line.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import yaml

from ainative import errors

MAX_BYTES = 128 * 1024
"""Largest spec file: hand-written specs are a few KB; more is a mistake or an attack."""
MAX_DOCUMENTS = 100
"""Most ``---`` documents in one file."""
MAX_DEPTH = 32
"""Deepest nesting of mappings and sequences (real specs use 4)."""
MAX_NODES = 5_000
"""Most YAML nodes in one file, as written."""
MAX_ALIASES = 100
"""Most ``*alias`` references in one file."""
MAX_EXPANDED = 20_000
"""Most values in one file once aliases are expanded (the alias-bomb guard)."""

Path_ = tuple[Any, ...]
_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = {_TAG + t for t in ("str", "int", "float", "bool", "null")}


class _Limit(Exception):
    """Raised inside the loader; turned into a SpecError with the file name by ``load``."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line


class SpecLoader(yaml.SafeLoader):
    """SafeLoader that counts what it composes: depth, nodes, aliases and documents."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0
        self.nodes = 0
        self.aliases = 0

    def fetch_flow_collection_start(self, token_class: Any) -> None:
        # The scanner reads up to ~1,000 brackets ahead with work quadratic in the nesting: stop
        # at the depth limit before it does.
        if self.flow_level >= MAX_DEPTH:
            raise _Limit(f"nested deeper than {MAX_DEPTH} levels", self.line + 1)
        super().fetch_flow_collection_start(token_class)

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        line = event.start_mark.line + 1 if event.start_mark else 1
        if isinstance(event, yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise _Limit(f"more than {MAX_ALIASES} aliases (*name); spell the values out", line)
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _Limit(f"more than {MAX_NODES} YAML nodes; a spec is a few dozen", line)
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise _Limit(f"nested deeper than {MAX_DEPTH} levels", line)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def documents(self) -> Iterator[Any]:
        count = 0
        while self.check_node():
            count += 1
            if count > MAX_DOCUMENTS:
                line = self.peek_event().start_mark.line + 1
                raise _Limit(f"more than {MAX_DOCUMENTS} documents ('---') in one file", line)
            yield self.get_node()


class _Walker:
    """Node tree -> plain data, recording the line of every key path."""

    def __init__(self, loader: SpecLoader) -> None:
        self.loader = loader
        self.expanded = 0
        self.active: set[int] = set()

    def value(self, node: Any, path: Path_, lines: dict[Path_, int], depth: int = 0) -> Any:
        line = node.start_mark.line + 1
        lines.setdefault(path, line)
        self.expanded += 1
        if self.expanded > MAX_EXPANDED:
            raise _Limit(f"more than {MAX_EXPANDED} values once aliases are expanded (an alias "
                         "bomb?); spell the values out", line)
        if depth > MAX_DEPTH:
            raise _Limit(f"nested deeper than {MAX_DEPTH} levels once aliases are expanded", line)
        if id(node) in self.active:
            raise _Limit("an alias refers to a value that contains it (a cycle)", line)
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node)
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode) and node.tag == _TAG + "map":
                return self.mapping(node, path, lines, depth)
            if isinstance(node, yaml.SequenceNode) and node.tag == _TAG + "seq":
                return [self.value(v, path + (i,), lines, depth + 1) for i, v in enumerate(node.value)]
        finally:
            self.active.discard(id(node))
        raise _Limit(f"YAML tag {node.tag!r} is not allowed in a spec (plain mappings, lists, "
                     "strings, numbers, booleans and null only)", line)

    def scalar(self, node: Any) -> Any:
        line = node.start_mark.line + 1
        if node.tag not in _SCALAR_TAGS:
            raise _Limit(f"YAML tag {node.tag!r} is not allowed in a spec (strings, numbers, "
                         "booleans and null only)", line)
        try:
            return self.loader.yaml_constructors[node.tag](self.loader, node)
        except (ValueError, OverflowError) as exc:  # e.g. an int of 5,000 digits
            raise _Limit(f"cannot read value {str(node.value)[:40]!r}: {exc}", line) from None

    def mapping(self, node: Any, path: Path_, lines: dict[Path_, int], depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        seen: dict[str, int] = {}
        merges: list[Any] = []
        for key_node, value_node in node.value:
            if key_node.tag == _TAG + "merge":
                merges.append(value_node)
                continue
            key_line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != _TAG + "str":
                shown = key_node.value if isinstance(key_node, yaml.ScalarNode) else "a " + \
                    type(key_node).__name__.replace("Node", "").lower()
                raise _Limit(f"keys must be strings, got {shown!r}; quote it (e.g. \"{shown}\": ...)"
                             if isinstance(key_node, yaml.ScalarNode) else
                             f"keys must be strings, got {shown}", key_line)
            key = key_node.value
            if key in seen:
                raise _Limit(f"duplicate key {key!r} (first at line {seen[key]})", key_line)
            seen[key] = key_line
            lines[path + (key,)] = key_line
            out[key] = self.value(value_node, path + (key,), lines, depth + 1)
        for merge in merges:  # `<<: *defaults`: keys written here win over merged ones
            sources = merge.value if isinstance(merge, yaml.SequenceNode) else [merge]
            for source in sources:
                merged = self.value(source, path, {}, depth + 1)
                if not isinstance(merged, dict):
                    raise _Limit("'<<' merges only mappings", merge.start_mark.line + 1)
                for key, value in merged.items():
                    out.setdefault(key, value)
        return out


def load_documents(data: bytes | str, file: str) -> list[tuple[Any, dict[Path_, int], int]]:
    """(plain data, {key path: line}, first line) of each non-empty document; SpecError on anything
    that is not a small, plain YAML file."""
    text = _decode(data, file)
    loader: SpecLoader | None = None
    out = []
    try:
        loader = SpecLoader(text)  # checks for unprintable characters already
        for node in loader.documents():
            if isinstance(node, yaml.ScalarNode) and node.tag == _TAG + "null" and not node.value:
                continue  # an empty document: a trailing '---' or a comment-only section
            walker = _Walker(loader)
            lines: dict[Path_, int] = {}
            out.append((walker.value(node, (), lines), lines, node.start_mark.line + 1))
    except _Limit as exc:
        raise errors.SpecError(f"{file}:{exc.line}: {exc}", file=file, line=exc.line,
                               field="(document)") from None
    except yaml.YAMLError as exc:
        # the construct that is broken starts at context_mark; problem_mark may be end of stream
        mark = getattr(exc, "context_mark", None) or getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        if isinstance(exc, yaml.reader.ReaderError):  # an unprintable character: by position
            line = text.count("\n", 0, exc.position) + 1
        raise errors.SpecError(f"{file}:{line}: not valid YAML: {_one_line(exc)}", file=file,
                               line=line, field="(document)") from None
    except RecursionError:  # a backstop: the depth limit should always come first
        raise errors.SpecError(f"{file}:1: nested too deeply", file=file, line=1,
                               field="(document)") from None
    finally:
        if loader is not None:
            loader.dispose()
    return out


def _decode(data: bytes | str, file: str) -> str:
    size = len(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)
    if size > MAX_BYTES:
        raise errors.SpecError(f"{file}:1: spec file is {size:,} bytes; the limit is {MAX_BYTES:,}",
                               file=file, line=1, field="(file)")
    if isinstance(data, str):
        text = data
    else:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            raise errors.SpecError(f"{file}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x} at "
                                   f"offset {exc.start}); save the spec as UTF-8", file=file,
                                   line=line, field="(file)") from None
    return text.removeprefix("\ufeff")


def _one_line(exc: yaml.YAMLError) -> str:
    problem = getattr(exc, "problem", None)
    context = getattr(exc, "context", None)
    if isinstance(exc, yaml.reader.ReaderError):
        return f"character {exc.character!r} is not allowed in YAML"
    if problem:
        return f"{context}, {problem}" if context else str(problem)
    return " ".join(str(exc).split())
