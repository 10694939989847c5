"""What every pipeline stage's main() is: a command line read off its `run` signature, its params.yaml section
loaded and validated, `run` called, and user errors as one line (exit 2).

dvc.yaml is the only place that names a stage's paths: each `Path` parameter of `run` is a required flag
(`model_path` -> `--model`; a trailing _path/_dir/_out/_png is dropped), so a stage module restates none of them.
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from tagan.config import PARAMS_FILE, ParamsError, load_stage
from tagan.errors import UserError
from tagan.utils import setup_logging

_SUFFIX = re.compile(r"_(path|paths|dir|out|png)$")


def flag(name: str) -> str:
    """The command-line flag of a `run` parameter: model_path -> --model, num_shards -> --num-shards."""
    return "--" + _SUFFIX.sub("", name).replace("_", "-")


def _named_paths(items: list[str]) -> dict[str, Path]:
    """NAME=PATH words -> {NAME: PATH} (a `dict[str, Path]` parameter, e.g. --cgan paper=a.pt strong=b.pt)."""
    pairs = [item.partition("=") for item in items]
    bad = [item for item, (_, eq, path) in zip(items, pairs) if not eq or not path]
    if bad:
        raise UserError(f"expected NAME=PATH, got {bad[0]!r}")
    return {name: Path(path) for name, _, path in pairs}


def parser_for(run: Callable[..., Any], description: str | None = None) -> argparse.ArgumentParser:
    """An argparse parser with one flag per parameter of `run` after (cfg, runtime), typed from its hints:
    Path (required unless it has a default), Literal (choices), int / float / str, dict[str, Path] (NAME=PATH...)."""
    hints = typing.get_type_hints(run)
    ap = argparse.ArgumentParser(description=description)
    for name, param in list(inspect.signature(run).parameters.items())[2:]:
        tp, kw = hints[name], {"dest": name}
        args = [a for a in get_args(tp) if a is not type(None)]  # X | None -> X
        base = args[0] if get_origin(tp) is not Literal and len(args) == 1 else tp
        if get_origin(base) is Literal:
            kw["choices"] = get_args(base)
        elif get_origin(base) is dict:
            kw["nargs"] = "+"
        elif base in (Path, int, float, str):
            kw["type"] = base
        else:
            raise TypeError(f"{run.__module__}.run: no command-line type for {name}: {tp}")
        if param.default is inspect.Parameter.empty:
            kw["required"] = True
        else:
            kw["default"] = param.default
        ap.add_argument(flag(name), **kw)
    ap.add_argument("--params", type=Path, default=PARAMS_FILE, help="the params file (default: params.yaml)")
    return ap


def main(run: Callable[..., Any], params_cls: type, section: str, argv: list[str] | None = None) -> Any:
    """A stage's whole main(): parse its flags, load `section` (`section.<preset>` when run takes a preset),
    call run(cfg, runtime, **flags). Params and user errors print one line and exit 2; Ctrl-C exits 130."""
    setup_logging()
    try:
        module = sys.modules.get(run.__module__)
        doc = (module.__doc__ or "").strip().splitlines()[0] if module and module.__doc__ else None
        kwargs = vars(parser_for(run, doc).parse_args(argv))
        hints = typing.get_type_hints(run)
        for name, value in kwargs.items():
            if value is not None and get_origin(hints.get(name)) is dict:
                kwargs[name] = _named_paths(value)
        params_file = kwargs.pop("params")
        dotted = f"{section}.{kwargs['preset']}" if "preset" in kwargs else section
        cfg, runtime = load_stage(params_cls, dotted, params_file)
        return run(cfg, runtime, **kwargs)
    except ParamsError as e:
        print(f"error: params.yaml: {e}", file=sys.stderr)
        sys.exit(2)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted; outputs written so far are complete, partial files were removed", file=sys.stderr)
        sys.exit(130)
