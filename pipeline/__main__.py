"""python -m pipeline: validate the whole params.yaml against the stage registry (exit 2 on an error)."""

import sys

from pipeline import STAGES
from tagan.config import ParamsError, validate_all

try:
    validate_all(STAGES)
except ParamsError as e:
    print(f"error: params.yaml: {e}", file=sys.stderr)
    sys.exit(2)
print("params.yaml: ok")
