"""params.yaml validation (tagan.config): one schema, errors name the key before any work."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml

from tagan import config
from tagan.config import ParamsError

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Inner:
    """A nested params block."""

    width: int = 8


@dataclass
class Sample:
    """A stage's params, with the kinds of fields stages use."""

    lr: float = 1e-3
    steps: int = 10
    mode: Literal["concat", "projection"] = "concat"
    flags: Literal[0, 1] = 0
    sizes: tuple[int, int] = (2, 3)
    grid: list[float] = field(default_factory=lambda: [0.1])
    name: str | None = None
    inner: Inner = field(default_factory=Inner)

    def __post_init__(self) -> None:
        config.positive("lr", self.lr)
        config.in_range("steps", self.steps, 1, 100)


SCHEMA = {"runtime": config.Runtime, "sample": Sample, "gan.paper": Sample, "gan.strong": Sample}


def _write(tmp_path: Path, data: dict | str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"lr": 0.1, "bogus": 1}, "sample.bogus: unknown key; allowed keys are flags, grid, inner, lr"),
        ({"lr": "fast"}, "sample.lr: must be a number, got 'fast'"),
        ({"steps": 2.5}, "sample.steps: must be an integer, got 2.5"),
        ({"steps": True}, "sample.steps: must be an integer, got True"),
        ({"steps": 500}, "sample.steps: must be in [1, 100], got 500"),
        ({"lr": -1}, "sample.lr: must be > 0, got -1.0"),
        ({"mode": "sum"}, "sample.mode: must be one of 'concat' | 'projection', got 'sum'"),
        ({"flags": True}, "sample.flags: must be one of 0 | 1, got True"),
        ({"sizes": [1, 2, 3]}, "sample.sizes: must have 2 items, got 3"),
        ({"grid": [0.1, "x"]}, "sample.grid[1]: must be a number, got 'x'"),
        ({"inner": {"width": "wide"}}, "sample.inner.width: must be an integer, got 'wide'"),
        ({"inner": {"depth": 2}}, "sample.inner.depth: unknown key; allowed keys are width"),
        ({"name": 3}, "sample.name: must be a string, got 3"),
    ],
)
def test_bad_values_name_the_key_and_what_is_allowed(data: dict, message: str) -> None:
    with pytest.raises(ParamsError) as err:
        config.from_dict(Sample, data, "sample")
    assert str(err.value).startswith(message)


def test_good_values_are_coerced_to_the_declared_types() -> None:
    cfg = config.from_dict(Sample, {"lr": 1, "sizes": [4, 5], "name": None, "inner": {"width": 2}}, "sample")
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float)
    assert cfg.sizes == (4, 5) and cfg.inner == Inner(width=2) and cfg.name is None
    assert config.to_dict(cfg)["sizes"] == [4, 5]


def test_scientific_notation_reads_as_a_number(tmp_path: Path) -> None:
    """PyYAML alone reads `2e-4` as a string; params.yaml (and dvc exp run -S) mean a float."""
    path = _write(tmp_path, "sample:\n  lr: 2e-4\n  steps: 1_0\n  name: 1.2.3\n")
    cfg = config.load(Sample, "sample", path)
    assert cfg.lr == 2e-4 and cfg.steps == 10 and cfg.name == "1.2.3"


def test_runtime_section_is_checked_with_every_stage(tmp_path: Path) -> None:
    path = _write(tmp_path, {"runtime": {"device": "tpu"}, "sample": {}})
    with pytest.raises(ParamsError, match=r"^runtime.device: must be auto, cpu, cuda or cuda:N, got 'tpu'"):
        config.load_stage(Sample, "sample", path)
    path = _write(tmp_path, {"sample": {}})
    cfg, runtime = config.load_stage(Sample, "sample", path)
    assert cfg == Sample() and runtime == config.Runtime()


def test_missing_section_and_broken_yaml_are_readable(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match=r"^gan.paper: missing section in params.yaml"):
        config.load(Sample, "gan.paper", _write(tmp_path, {"gan": {}}))
    with pytest.raises(ParamsError, match="not valid YAML"):
        config.load(Sample, "sample", _write(tmp_path, "sample: [1, 2\n"))
    with pytest.raises(ParamsError, match="not found"):
        config.load(Sample, "sample", tmp_path / "nope.yaml")


def test_validate_all_checks_every_section_and_preset(tmp_path: Path) -> None:
    good = {"runtime": {}, "sample": {"lr": 0.5}, "gan": {"paper": {}, "strong": {"steps": 50}}}
    out = config.validate_all(SCHEMA, _write(tmp_path, good))
    assert out["gan.strong"].steps == 50 and out["sample"].lr == 0.5
    cases = [
        ({**good, "smaple": {}}, "smaple: unknown section; allowed sections are gan, runtime, sample"),
        ({**good, "gan": {"paper": {}, "strong": {}, "huge": {}}}, "gan.huge: unknown preset"),
        (
            {**good, "gan": {"paper": {}, "strong": {"steps": 0}}},
            "gan.strong.steps: must be in [1, 100], got 0",
        ),
        ({"runtime": {}, "sample": {}}, "gan: missing section"),
    ]
    for data, message in cases:
        with pytest.raises(ParamsError) as err:
            config.validate_all(SCHEMA, _write(tmp_path, data))
        assert str(err.value).startswith(message)


def test_schema_lists_every_params_yaml_section() -> None:
    """Each top-level section of the real params.yaml has a Params class in the stage registry."""
    from pipeline import STAGES

    sections = set(config.read_params(ROOT / "params.yaml"))
    assert sections <= {key.split(".")[0] for key in STAGES}


def _python(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.slow
def test_python_m_pipeline_validates_the_real_params_yaml(tmp_path: Path) -> None:
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    ok = _python(["-m", "pipeline"], tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "params.yaml: ok" in ok.stdout

    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    data["runtime"]["num_threads"] = -1
    _write(tmp_path, data)
    bad = _python(["-m", "pipeline"], tmp_path)
    assert bad.returncode == 2
    assert bad.stderr.strip() == "error: params.yaml: runtime.num_threads: must be >= 0, got -1"


@pytest.mark.slow
def test_a_stage_with_a_bad_param_fails_before_any_work(tmp_path: Path) -> None:
    """The real mnist_data stage: exit 2, one line naming the key, no output written."""
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    data["mnist_data"]["val_size"] = 0
    _write(tmp_path, data)
    out, metrics = tmp_path / "data" / "mnist.npz", tmp_path / "metrics.json"
    proc = _python(["-m", "pipeline.mnist_data", "--out", str(out), "--metrics", str(metrics)], tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: params.yaml: mnist_data.val_size: must be in [1, 59000], got 0"
    )
    assert "Traceback" not in proc.stderr
    assert not out.exists() and not metrics.exists() and not (tmp_path / "data").exists()


def _declaring_class(cls: type, name: str) -> type:
    """The class in cls's MRO that declares field `name` (a subclass's inherited field is its base's)."""
    return next(c for c in reversed(cls.__mro__) if name in getattr(c, "__annotations__", {}))


def test_a_default_never_disagrees_with_params_yaml() -> None:
    """One home for each value: where params.yaml gives a field one value in every section that uses it, the
    dataclass default is that value (a default that differs would mislead whoever reads the code); stage modules
    set no defaults of their own for shared configs (no `default_factory=lambda: OptimConfig(lr=...)`)."""
    import dataclasses
    import typing
    from collections import defaultdict

    from pipeline import STAGES

    data = config.read_params(ROOT / "params.yaml")
    given: dict[tuple[type, str], list[Any]] = defaultdict(list)

    def walk(cls: type, node: dict[str, Any], key: str) -> None:
        built = config.from_dict(cls, node, key)
        for f in dataclasses.fields(cls):
            tp = typing.get_type_hints(cls)[f.name]
            if dataclasses.is_dataclass(tp):
                walk(tp, node.get(f.name, {}), f"{key}.{f.name}")
            else:
                value = getattr(built, f.name) if f.name in node else dataclasses.MISSING
                given[(_declaring_class(cls, f.name), f.name)].append(value)

    for key, target in STAGES.items():
        walk(config._resolve(target), config.section(data, key) or {}, key)
    wrong = []
    for (cls, name), values in given.items():
        if dataclasses.MISSING in values or len({repr(v) for v in values}) > 1:
            continue  # some section relies on the default, or the sections differ: the default is not restated
        default = config.to_dict(config.from_dict(cls, {}, "x")).get(name) if _all_defaulted(cls) else None
        if default is not None and config.to_dict(_with(cls, name, values[0]))[name] != default:
            wrong.append(f"{cls.__qualname__}.{name}: default {default!r}, params.yaml {values[0]!r}")
    assert not wrong, "\n".join(wrong)


def _all_defaulted(cls: type) -> bool:
    import dataclasses

    return all(
        f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        for f in dataclasses.fields(cls)
    )


def _with(cls: type, name: str, value: Any) -> Any:
    import dataclasses

    return dataclasses.replace(cls(), **{name: value})
