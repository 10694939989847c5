"""The layout shows the architecture: stages -> library, CLI -> library, never the other way or sideways."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGE_NAMES = {"Params", "run", "main"}  # all a stage module defines


def imports(path: Path) -> set[str]:
    """Every module `path` imports, at any depth (function-level imports count)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def stage_files() -> list[Path]:
    return sorted(p for p in (ROOT / "pipeline").glob("*.py") if not p.name.startswith("__"))


def top_level_definitions(path: Path) -> set[str]:
    """Names of the functions and classes a module defines outside any function or class (under if/try too)."""
    found: set[str] = set()
    todo: list[ast.AST] = [ast.parse(path.read_text())]
    while todo:
        for node in ast.iter_child_nodes(todo.pop()):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                found.add(node.name)
            elif isinstance(node, ast.stmt):
                todo.append(node)
    return found


# thinned by the GAN-trainer change of issue 12 (another branch); strict for every other stage


def test_the_library_never_imports_a_stage_or_the_cli() -> None:
    bad = {
        str(p.relative_to(ROOT)): sorted(m for m in imports(p) if m.split(".")[0] in ("pipeline", "cli"))
        for p in (ROOT / "tagan").rglob("*.py")
    }
    assert not {k: v for k, v in bad.items() if v}


def test_a_stage_never_imports_another_stage() -> None:
    for path in stage_files():
        others = {m for m in imports(path) if m.startswith("pipeline.") and m != f"pipeline.{path.stem}"}
        assert not others, f"{path.name} imports {sorted(others)}: move what they share into tagan/"


def test_the_cli_imports_only_the_library() -> None:
    assert not {m for m in imports(ROOT / "cli.py") if m.split(".")[0] == "pipeline"}


def test_every_stage_is_registered_and_runs_from_dvc_yaml() -> None:
    from pipeline import STAGES

    registered = {target.split(":")[0] for target in STAGES.values() if target.startswith("pipeline.")}
    dvc_yaml = (ROOT / "dvc.yaml").read_text()
    for path in stage_files():
        assert f"python -m pipeline.{path.stem}" in dvc_yaml, f"{path.name} is not a dvc.yaml stage"
        assert f"pipeline.{path.stem}" in registered, f"{path.name} has no params section in pipeline.STAGES"


@pytest.mark.parametrize("path", stage_files(), ids=lambda p: p.stem)
def test_a_stage_module_defines_only_params_run_and_main(path: Path) -> None:
    defined = top_level_definitions(path)
    assert defined == STAGE_NAMES, (
        f"{path.name} defines {sorted(defined - STAGE_NAMES)} besides Params/run/main (move them into tagan/)"
        if defined - STAGE_NAMES
        else f"{path.name} lacks {sorted(STAGE_NAMES - defined)}"
    )


def test_top_level_definitions_sees_through_if_and_try_but_not_into_functions(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "import os\nX = 1\nclass Params: pass\ndef run():\n    def inner(): pass\n"
        "if X:\n    def helper(): pass\ntry:\n    class Extra: pass\nexcept ImportError:\n    pass\n"
    )
    assert top_level_definitions(module) == {"Params", "run", "helper", "Extra"}


def test_every_dvc_yaml_command_parses_with_its_stage_s_own_flags() -> None:
    """A stage's flags come from its run() signature (tagan.stage): dvc.yaml names every path, nothing else does."""
    import importlib
    import shlex

    import yaml

    from tagan.stage import parser_for

    for name, stage in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].items():
        stage = stage.get("do", stage)
        words = shlex.split(stage["cmd"].replace("${item}", "x"))
        module = importlib.import_module(words[words.index("-m") + 1])
        parser = parser_for(module.run)
        for action in parser._actions:
            if action.choices and "x" not in action.choices:
                action.choices = [*action.choices, "x"]  # the foreach item stands for each preset
        args = vars(parser.parse_args(words[words.index("-m") + 2 :]))
        given = {a for a in args if a != "params" and args[a] is not None}
        required = {a.dest for a in parser._actions if a.required}
        assert required <= given, f"{name}: dvc.yaml lacks {sorted(required - given)}"


# --- tagging methods: one registered class per kind -----------------------------------------------------------
EVALUATION_STAGES = ("tag_eval", "photo_eval")


def test_every_method_kind_tag_eval_plans_is_registered() -> None:
    """tag_eval plans its methods as (kind, options) pairs: each kind names a registered Method class."""
    from tagan.tagging.methods import list_methods

    planned = {
        node.elts[0].value
        for node in ast.walk(ast.parse((ROOT / "pipeline" / "tag_eval.py").read_text()))
        if isinstance(node, ast.Tuple) and len(node.elts) == 2 and isinstance(node.elts[1], ast.Dict)
        and isinstance(node.elts[0], ast.Constant) and isinstance(node.elts[0].value, str)
    }  # fmt: skip
    assert planned and planned <= set(list_methods()), sorted(planned - set(list_methods()))


@pytest.mark.parametrize("stage", EVALUATION_STAGES)
def test_evaluation_stages_name_no_method_class(stage: str) -> None:
    """tag_eval and photo_eval reach methods through the registry (tagan.tagging.methods), never a class."""
    from tagan.tagging.methods.base import _REGISTRY

    classes = {cls.__name__ for cls in _REGISTRY.values()}
    path = ROOT / "pipeline" / f"{stage}.py"
    names = {n.id for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Name)}
    names |= {n.attr for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Attribute)}
    assert not names & classes, f"{path.name} names {sorted(names & classes)}: use methods.get_method(kind)"
    families = {m for m in imports(path) if m.startswith("tagan.tagging.methods.")}
    assert not families, f"{path.name} imports {sorted(families)}: import tagan.tagging.methods"


def source_modules() -> list[Path]:
    return sorted([*(ROOT / "tagan").rglob("*.py"), *(ROOT / "pipeline").glob("*.py")])


@pytest.mark.parametrize("path", source_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_module_is_short_and_says_what_it_is(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= 450, f"{path.name}: over 450 lines; split it by family"
    assert ast.get_docstring(ast.parse(path.read_text())), f"{path.name} has no module docstring"


def test_the_layout_shows_the_families() -> None:
    """A thin face (cli.py <= 300 lines) and a library of subpackages: at most 10 modules directly in tagan/."""
    assert len((ROOT / "cli.py").read_text().splitlines()) <= 300, "cli.py: move logic into tagan/photos/"
    top = sorted(p.name for p in (ROOT / "tagan").glob("*.py"))
    assert len(top) <= 10, f"{len(top)} modules directly in tagan/ ({top}): give them a subpackage"
