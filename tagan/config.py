"""Validated params: dataclasses built from params.yaml sections, failing early with the key's name."""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import yaml

T = TypeVar("T")
PARAMS_FILE = Path("params.yaml")


class ParamsError(ValueError):
    """A params.yaml value or key is wrong; the message names the key and what is allowed."""


def check(cond: bool, key: str, msg: str) -> None:
    """Raise a ParamsError for `key` unless `cond` holds (use in __post_init__)."""
    if not cond:
        raise ParamsError(f"{key}: {msg}")


def positive(key: str, value: float) -> None:
    """Raise a ParamsError for `key` unless `value` > 0."""
    check(value > 0, key, f"must be > 0, got {value!r}")


def positive_list(key: str, values: list[float]) -> None:
    """Raise a ParamsError for `key` unless `values` is a non-empty list of numbers > 0."""
    check(
        len(values) > 0 and all(v > 0 for v in values),
        key,
        f"must be a non-empty list of positive numbers, got {values}",
    )


def in_range(key: str, value: float, lo: float, hi: float) -> None:
    """Raise a ParamsError for `key` unless lo <= `value` <= hi."""
    check(lo <= value <= hi, key, f"must be in [{lo}, {hi}], got {value!r}")


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against type `tp`, converting where YAML is loose (int for float, list for tuple)."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin is Literal:
        if not any(value == a and type(value) is type(a) for a in get_args(tp)):  # True is not 1
            raise ParamsError(f"{key}: must be one of {_type_name(tp)}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ParamsError as e:
                errors.append(str(e))
        raise ParamsError(errors[0] if len(errors) == 1 else f"{key}: {value!r} matches none of {args}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ParamsError(f"{key}: must be a mapping of {tp.__name__} fields, got {value!r}")
        return from_dict(tp, value, key)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ParamsError(f"{key}: must be a list, got {value!r}")
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ParamsError(f"{key}: must have {len(args)} items, got {len(value)}")
            return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        items = [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ParamsError(f"{key}: must be a mapping, got {value!r}")
        return dict(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamsError(f"{key}: must be a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamsError(f"{key}: must be an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ParamsError(f"{key}: must be true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ParamsError(f"{key}: must be a string, got {value!r}")
        return value
    if tp is Path:
        if not isinstance(value, (str, Path)):
            raise ParamsError(f"{key}: must be a path string, got {value!r}")
        return Path(value)
    raise TypeError(f"unsupported params type {tp!r} for {key}")


def from_dict(cls: type[T], data: dict[str, Any] | None, section: str) -> T:
    """Build dataclass `cls` from a mapping; unknown keys, wrong types and bad values raise ParamsError."""
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ParamsError(
            f"{section}.{unknown[0]}: unknown key; allowed keys are {', '.join(sorted(fields))}"
        )
    kwargs = {name: _coerce(value, hints[name], f"{section}.{name}") for name, value in data.items()}
    for name, f in fields.items():
        if (
            name not in kwargs
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ):
            raise ParamsError(f"{section}.{name}: missing required key")
    try:
        return cls(**kwargs)
    except ParamsError as e:
        msg = str(e)
        raise ParamsError(msg if msg.startswith(f"{section}.") else f"{section}.{msg}") from None


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain-type dict of a params dataclass (for checkpoints and JSON)."""

    def plain(v: Any) -> Any:
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return {k: plain(v) for k, v in dataclasses.asdict(cfg).items()}


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads `2e-4` and `1e3` as floats (YAML 1.2, as DVC writes them), not strings."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def read_params(path: Path = PARAMS_FILE) -> dict[str, Any]:
    """The whole params.yaml as a dict; a YAML syntax error is a ParamsError."""
    try:
        data = yaml.load(Path(path).read_text(), Loader=_Loader) or {}
    except FileNotFoundError:
        raise ParamsError(f"{path}: not found (run from the repository root)") from None
    except yaml.YAMLError as e:
        raise ParamsError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: must be a mapping of stage sections")
    return data


def section(data: dict[str, Any], dotted: str) -> Any:
    """The value at a dotted key such as 'mnist_cgan.strong'."""
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ParamsError(f"{dotted}: missing section in params.yaml")
        node = node[part]
    return node


def load(cls: type[T], dotted: str, path: Path = PARAMS_FILE) -> T:
    """Load and validate the params.yaml section `dotted` as dataclass `cls`."""
    return from_dict(cls, section(read_params(path), dotted), dotted)


@dataclasses.dataclass
class Runtime:
    """The `runtime` section: where and how wide to compute (shared by all stages)."""

    device: str = "auto"  # auto | cpu | cuda | cuda:N
    num_threads: int = 0  # torch intra-op threads; 0 = torch's default (one per core)
    workers: int = 2  # image-decoding worker processes (0: decode in the main process)

    def __post_init__(self) -> None:
        check(
            self.device == "auto" or self.device.split(":")[0] in ("cpu", "cuda", "mps"),
            "device",
            f"must be auto, cpu, cuda or cuda:N, got {self.device!r}",
        )
        check(self.num_threads >= 0, "num_threads", f"must be >= 0, got {self.num_threads}")
        check(self.workers >= 0, "workers", f"must be >= 0, got {self.workers}")


def _resolve(target: str | type) -> type:
    import importlib

    if isinstance(target, type):
        return target
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def validate_all(schema: dict[str, str | type], path: Path = PARAMS_FILE) -> dict[str, Any]:
    """Validate every section of params.yaml against `schema` (section -> Params class or "module:Class")."""
    data = read_params(path)
    tops = {key.split(".")[0] for key in schema}
    unknown = sorted(set(data) - tops)
    if unknown:
        raise ParamsError(f"{unknown[0]}: unknown section; allowed sections are {', '.join(sorted(tops))}")
    # Preset parents (mnist_cgan -> paper, strong) may hold only their listed presets.
    parents: dict[str, set[str]] = {}
    for key in schema:
        parent, _, child = key.rpartition(".")
        if parent:
            parents.setdefault(parent, set()).add(child)
    for parent, children in parents.items():
        node = section(data, parent)
        if isinstance(node, dict):
            extra = sorted(set(node) - children)
            if extra:
                raise ParamsError(
                    f"{parent}.{extra[0]}: unknown preset; allowed presets are {', '.join(sorted(children))}"
                )
    return {key: from_dict(_resolve(target), section(data, key), key) for key, target in schema.items()}


def load_stage(cls: type[T], dotted: str, path: Path = PARAMS_FILE) -> tuple[T, Runtime]:
    """A stage's own params plus the shared runtime section, both validated."""
    data = read_params(path)
    runtime = from_dict(Runtime, data.get("runtime", {}), "runtime")
    return from_dict(cls, section(data, dotted), dotted), runtime
