"""Stage image_features: pooled CNN features of every tagged image (batched, worker decoding, resumable shards)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tagan import stage
from tagan.config import Runtime, positive
from tagan.errors import UserError
from tagan.readers.items import read_items
from tagan.tagging.features import (
    RESUME_DIR,
    FeatureConfig,
    compute_shard,
    load_backbone,
    merge,
    run_key,
    shard_bounds,
    shard_path,
)
from tagan.utils import resolve_device, set_threads

log = logging.getLogger(__name__)


@dataclass
class Params(FeatureConfig):
    """params.yaml `image_features`: the feature config plus the number of resumable shards."""

    num_shards: int = (
        4  # work units written to .resume/ as they finish; an interrupted run redoes only the rest
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        positive("num_shards", self.num_shards)


def run(
    cfg: Params,
    runtime: Runtime,
    items_path: Path,
    out_dir: Path,
    metrics_path: Path,
    *,
    shard: int | None = None,
    num_shards: int | None = None,
    resume_dir: Path = RESUME_DIR,
) -> dict[str, Any]:
    """Extract features for items.jsonl; with `shard` only that shard, else all missing shards then merge."""
    set_threads(runtime.num_threads)
    num_shards = num_shards or cfg.num_shards
    if num_shards < 1:
        raise UserError(f"--num-shards must be >= 1, got {num_shards}")
    if shard is not None and not 0 <= shard < num_shards:
        raise UserError(f"--shard must be in [0, {num_shards - 1}], got {shard}")
    rows = read_items(items_path)
    ids, paths = [r["id"] for r in rows], [r["path"] for r in rows]
    resume = Path(resume_dir) / run_key(cfg, ids, paths)
    bounds = shard_bounds(len(ids), num_shards, cfg.batch_size)
    todo = [s for s in ([shard] if shard is not None else range(num_shards))
            if not shard_path(resume, s, num_shards).is_file()]  # fmt: skip
    t0 = time.perf_counter()
    computed = {"images": 0, "skipped": 0, "seconds": 0.0}
    if todo:
        backbone = load_backbone(cfg, resolve_device(runtime.device))  # the CLI's and photo_eval's path too
        for s in todo:
            a, b = bounds[s]
            log.info("shard %d/%d: images %d..%d", s, num_shards, a, b)
            got = compute_shard(
                cfg, runtime.workers, backbone, ids[a:b], paths[a:b], shard_path(resume, s, num_shards)
            )
            computed = {k: computed[k] + got[k] for k in computed}
    else:
        log.info("all requested shards already computed in %s", resume)
    if shard is not None:
        missing = [s for s in range(num_shards) if not shard_path(resume, s, num_shards).is_file()]
        if missing:
            log.info(
                "shard %d done; %d shards still missing (%s), merge runs once all exist",
                shard,
                len(missing),
                missing,
            )
            return computed
    return merge(resume, num_shards, cfg, out_dir, metrics_path, wall=time.perf_counter() - t0)


def main() -> None:
    stage.main(run, Params, "image_features")


if __name__ == "__main__":
    main()
