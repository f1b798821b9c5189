"""Typed dataclass configs loaded from YAML.

A file may inherit others with ``_base_: other.yaml`` (or a list; paths relative to the file): the bases are merged
underneath it, mappings key by key (OpenTAD's and MMEngine's convention), and the result is checked as one config;
a mapping marked ``_delete_: true`` replaces the inherited one instead of merging into it.

Unknown keys and wrong types are errors naming the key (as a dotted path) and the file. Nested dataclasses,
``Optional``, ``list``/``tuple``/``dict`` and ``Literal`` fields are checked; ints are accepted where floats are
expected. A dataclass checks its values in ``__post_init__``: a :class:`FieldError` there names the field (relative
to the dataclass), which loading turns into a :class:`ConfigError` naming the full dotted key and the file; any
other ``ValueError`` is reported against the dataclass's own key. ``dump_config`` writes the fully resolved config
(atomically) next to checkpoints and results.
"""
from __future__ import annotations

import copy
import dataclasses
import os
import re
import types

from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from clicktal.pipeline.core.files import atomic_write_text, not_utf8

C = TypeVar("C")


class ConfigError(ValueError):
    pass


class FieldError(ValueError):
    """A ``__post_init__`` check that failed for one field; ``key`` is relative to the dataclass (dotted for a value
    inside it, e.g. ``params.mining.xi``)."""

    def __init__(self, key: str, reason: str):
        super().__init__(f"{key}: {reason}")
        self.key, self.reason = key, reason


def nested_error(key: str, error: ValueError) -> FieldError:
    """``error`` from checking the mapping held by field ``key`` with ``config_from_dict(..., source=key)`` as a
    :class:`FieldError`, naming the inner dotted key when the message starts with one."""
    text = str(error)
    if text.startswith(f"{key}: "):
        text = text[len(key) + 2:]
    inner = re.match(r"([a-z_][\w.\[\]]*): (.*)", text, re.S)  # a snake_case key, not a class name
    return FieldError(f"{key}.{inner[1]}", inner[2]) if inner else FieldError(key, text)


# A number as Python writes it; YAML 1.1 (PyYAML) reads it as text unless the mantissa has a dot and the
# exponent a sign (1e-3, 5E4)
_NUMBER_TEXT = re.compile(r"([-+]?)([0-9]*)(?:\.([0-9]*))?(?:[eE]([-+]?)([0-9]+))?")


def _number_read_as_text(value: Any, where: str) -> ConfigError | None:
    """The error for a float field given ``value``, a string that spells a number (``1e-3``: YAML 1.1 reads it as
    text), suggesting the spelling YAML reads as a float (``1.0e-3``); None for any other value."""
    m = _NUMBER_TEXT.fullmatch(value.strip()) if isinstance(value, str) else None
    if m is None or not (m[2] or m[3]):
        return None
    sign, whole, fraction, exp_sign, exponent = m.groups()
    spelling = f"{sign}{whole or 0}.{fraction or 0}" + (f"e{exp_sign or '+'}{exponent}" if exponent else "")
    if spelling == value.strip():  # already a YAML float: it was quoted
        return ConfigError(f"{where}: expected a number, got the quoted text {value!r}; write {spelling} without "
                           f"quotes")
    return ConfigError(f"{where}: YAML read {value.strip()} as text, not a number; write {spelling} (YAML 1.1 reads "
                       f"a float only with a dot and a signed exponent)")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, where: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin is Union or origin is types.UnionType:
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, where)
            except ConfigError:
                continue
        text = _number_read_as_text(value, where) if float in args else None
        raise text or ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(f"{where}: expected one of {list(get_args(tp))}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping for {tp.__name__}, got {value!r}")
        return _build(tp, value, where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
            return tuple(_convert(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        out = [_convert(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        kt, vt = get_args(tp) or (Any, Any)
        return {_convert(k, kt, where): _convert(v, vt, f"{where}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _number_read_as_text(value, where) or ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp in (str, bool):
        if not isinstance(value, tp):
            raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported field type {tp!r}")


def _build(cls: type[C], data: dict, where: str) -> C:
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(
            f"unknown key(s) {', '.join(prefix + str(k) for k in unknown)} for {cls.__name__}; "
            f"known: {', '.join(sorted(fields))}"
        )
    kwargs = {}
    for name, value in data.items():
        key = f"{where}.{name}" if where else name
        kwargs[name] = _convert(value, hints[name], key)
    try:
        return cls(**kwargs)
    except TypeError as e:  # a required field left out
        raise ConfigError(f"{where or cls.__name__}: {e}") from None
    except FieldError as e:  # a __post_init__ check naming its field
        raise ConfigError(f"{where + '.' if where else ''}{e.key}: {e.reason}") from None
    except ValueError as e:  # another __post_init__ check
        raise ConfigError(f"{where or cls.__name__}: {e}") from None


def config_from_dict(cls: type[C], data: dict, source: str = "<dict>", *, folder: Path | None = None) -> C:
    """``data`` checked into ``cls``. A class with a ``prepare_config(data, *, folder)`` classmethod sees the
    mapping first and returns the one to check (the experiment config imports the modules its ``imports:`` names
    there, before its model is looked up); ``folder`` is the config file's, for its relative paths."""
    try:
        prepare = getattr(cls, "prepare_config", None)
        if prepare is not None:
            data = prepare(dict(data or {}), folder=folder)
        return _build(cls, data or {}, "")
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None


def _yaml_problem(error: yaml.YAMLError, text: str) -> str:
    """PyYAML's ``error`` on ``text`` as one line: where (the line when ``text`` has several, the column) and what."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    if mark is None:
        return problem
    at = f"column {mark.column + 1}"
    if "\n" in text.strip():
        at = f"line {mark.line + 1}, {at}"
    return f"{at}: {problem}"


def parse_yaml_value(text: str, where: str) -> object:
    """``text`` read with ``yaml.safe_load``; bad YAML raises :class:`ConfigError`, one line naming ``where`` (e.g.
    ``--set train.lr=[1,``) and the problem with its column."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{where}: not valid YAML ({_yaml_problem(e, text)})") from None
    except RecursionError:  # PyYAML composes nested collections recursively
        raise ConfigError(f"{where}: not valid YAML (nested too deeply to read)") from None


BASE_KEY = "_base_"


def _read_yaml(path: Path, chain: tuple[Path, ...] = ()) -> tuple[dict, list[Path]]:
    """The mapping of the YAML file ``path`` with the files its ``_base_`` names (one path or a list, relative to
    ``path``'s folder) merged underneath, in order (mappings merge key by key, anything else is replaced), and the
    files read, bases first."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: {not_utf8(e)}") from None
    except OSError as e:
        via = f" (the {BASE_KEY} of {chain[-1]})" if chain else ""
        raise ConfigError(f"{path}{via}: cannot read it ({e.strerror or e})") from None
    data = parse_yaml_value(text, str(path)) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    bases = data.pop(BASE_KEY, None)
    if bases is None:  # a file without bases still drops its _delete_ markers
        try:
            return merge_overrides({}, data), [path]
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not bases or not all(isinstance(b, str) and b for b in bases):
        raise ConfigError(f"{path}: {BASE_KEY}: expected a file name or a list of them, got {bases!r}")
    merged: dict = {}
    files: list[Path] = []
    for name in bases:
        base = Path(os.path.normpath(path.parent / os.path.expanduser(name)))
        if base in chain + (path,):
            raise ConfigError(f"{path}: {BASE_KEY}: {name} inherits from itself "
                              f"({' -> '.join(str(p) for p in chain + (path, base))})")
        data_b, files_b = _read_yaml(base, chain + (path,))
        merged = merge_overrides(merged, data_b)
        files += files_b
    try:
        return merge_overrides(merged, data), files + [path]
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def load_config(cls: type[C], path: str | os.PathLike, overrides: dict | None = None) -> C:
    """Load ``cls`` from a YAML file and the files its ``_base_`` names (:func:`_read_yaml`); ``overrides`` (nested
    dict) are merged on top before checking. An error names the key and every file read."""
    path = Path(path)
    data, files = _read_yaml(path)
    if overrides:
        data = merge_overrides(data, overrides)
    source = str(path) if len(files) == 1 else f"{path} (with its {BASE_KEY} {', '.join(map(str, files[:-1]))})"
    return config_from_dict(cls, data, source, folder=path.parent)


DELETE_KEY = "_delete_"


def merge_overrides(base: dict, over: dict, where: str = "") -> dict:
    """``base`` with the nested mapping ``over`` merged on top (neither is modified). A mapping of ``over`` that
    holds ``_delete_: true`` replaces the one under it instead of merging into it (MMEngine's marker: how a file
    drops keys its ``_base_`` sets); the marker itself never reaches the result. ``where``: the dotted key of
    ``over``, for errors."""
    out = dict(base)
    for k, v in over.items():
        key = f"{where}.{k}" if where else str(k)
        if isinstance(v, dict) and DELETE_KEY in v:
            replace = v[DELETE_KEY]
            if not isinstance(replace, bool):
                raise ConfigError(f"{key}.{DELETE_KEY}: expected true or false, got {replace!r}")
            v = {kk: vv for kk, vv in v.items() if kk != DELETE_KEY}
            if replace:
                out[k] = merge_overrides({}, v, key)
                continue
        if isinstance(v, dict):
            out[k] = merge_overrides(out[k] if isinstance(out.get(k), dict) else {}, v, key)
        else:
            out[k] = copy.deepcopy(v)
    return out


def config_to_dict(cfg: Any) -> dict:
    def plain(v):
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        if isinstance(v, list):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(cfg))


def dump_config(cfg: Any, path: str | os.PathLike) -> None:
    """``cfg`` (a dataclass or a plain mapping) as YAML, written atomically."""
    data = cfg if isinstance(cfg, dict) else config_to_dict(cfg)
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))


__all__ = ["ConfigError", "FieldError", "nested_error", "load_config", "config_from_dict", "config_to_dict",
           "dump_config", "merge_overrides", "parse_yaml_value", "BASE_KEY", "DELETE_KEY"]
