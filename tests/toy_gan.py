"""A tiny conditional GAN trained by the pipeline's trainer (tagan.gan.fit), run by test_training.py in
subprocesses (plain, killed and resumed, under torchrun).

It uses everything a stage uses: seeds, deterministic batches, EMA, lr decay, max-norm, model
selection, the resume file, DDP. Each rank writes its result to `result_rank<r>.json` (digests of
G, the sampled G and D, and the loss rows), so ranks never share a stream. tests/crash_hooks.py
stops it at a chosen save.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

import torch
from torch import nn

# Each rank may get its own resume dir (set before tagan.training reads TAGAN_RESUME_DIR), so a
# test can see which ranks wrote files.
if os.environ.get("TOY_RESUME_DIR_PER_RANK"):
    os.environ["TAGAN_RESUME_DIR"] = f"resume_rank{os.environ.get('RANK', '0')}"

sys.path.insert(0, str(Path(__file__).resolve().parent))
import crash_hooks  # noqa: E402

from tagan import gan, training  # noqa: E402
from tagan.utils import save_checkpoint, seed_everything, setup_logging  # noqa: E402

Z_DIM, X_DIM, N_CLASSES = 8, 16, 4


def build(width: int) -> tuple[nn.Module, nn.Module]:
    """Conditional generator and discriminator (MLPs with dropout and batch norm, like the stages)."""
    g = nn.Sequential(  # (B, Z + C) -> (B, X)
        nn.Linear(Z_DIM + N_CLASSES, width), nn.BatchNorm1d(width), nn.ReLU(), nn.Linear(width, X_DIM)
    )
    d = nn.Sequential(  # (B, X + C) -> (B, 1) logits
        nn.Linear(X_DIM + N_CLASSES, width), nn.LeakyReLU(0.2), nn.Dropout(0.3), nn.Linear(width, 1)
    )
    return g, d


class ToyTask(gan.GANTask):
    """x (N, X) conditioned on one-hot labels (N, C): G(z ++ c), D(x ++ c)."""

    def __init__(self, x: torch.Tensor, onehot: torch.Tensor) -> None:
        self.x, self.onehot = x, onehot

    def __len__(self) -> int:
        return len(self.x)

    def device(self) -> torch.device:
        return self.x.device

    def batch(self, idx: torch.Tensor) -> gan.Batch:
        return gan.Batch(self.x[idx], self.onehot[idx])  # (b, X), (b, C)

    def generate(self, g: nn.Module, batch: gan.Batch) -> gan.Fake:
        assert batch.cond is not None
        z = torch.randn(len(batch.real), Z_DIM)  # (b, Z) from the global RNG, restored on resume
        return gan.Fake(g(torch.cat([z, batch.cond], 1)), batch.cond, z)

    def discriminate(self, d: nn.Module, x: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        assert cond is not None
        return d(torch.cat([x, cond], 1)).squeeze(1)  # (b,)


def params_digest(module: nn.Module) -> str:
    """sha256 over every parameter (equal digests = bit-identical weights).

    Buffers are left out: under DDP each rank's BatchNorm running stats follow its own last batch
    until DDP broadcasts rank 0's at the next forward; rank 0's are the ones saved.
    """
    h = hashlib.sha256()
    for name, t in sorted(training.unwrap(module).named_parameters()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def main() -> None:
    """Train for --steps global steps, resuming from the Checkpointer's file when present."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--every", type=int, default=5, help="steps between resume files")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--select-every", type=int, default=6)
    ap.add_argument("--out", type=Path, default=Path("out/model.pt"))
    args = ap.parse_args()
    setup_logging()
    torch.set_num_threads(1)
    crash_hooks.install()

    info = training.init_distributed(torch.device("cpu"))
    seed = 7
    data_gen = torch.Generator().manual_seed(seed)
    x = torch.randn(200, X_DIM, generator=data_gen)  # (N, X)
    y = torch.randint(0, N_CLASSES, (200,), generator=data_gen)  # (N,)
    task = ToyTask(x, nn.functional.one_hot(y, N_CLASSES).float())
    probe = torch.cat([torch.randn(32, Z_DIM, generator=data_gen), task.onehot[:32]], 1)  # fixed G inputs

    def score(g: nn.Module) -> float:
        """A deterministic stand-in for a validation score: how close G's outputs stay to unit spread."""
        was_training = g.training
        with torch.no_grad():
            spread = g.eval()(probe).std()
        g.train(was_training)
        return -float((spread - 1).abs())

    seed_everything(seed)
    g, d = build(args.width)
    train = gan.TrainConfig(
        batch_size=args.batch_size, steps=args.steps, ema_decay=0.9, select_every=args.select_every,
        checkpoint_every=args.every, log_every=3,
    )  # fmt: skip
    optim = gan.OptimConfig(lr=2e-3, lr_decay=1.01, lr_min=1e-4, max_norm=3.0)
    config = {"steps": args.steps, "batch_size": args.batch_size, "width": args.width, "seed": seed}
    fitted = gan.fit(
        task, g, d, train, optim, name="toy_gan", config_dict=config, seed=seed, noise_seed=seed + 1,
        info=info, select=score,
    )  # fmt: skip
    result = {
        "g": params_digest(g),
        "sampler": params_digest(fitted.g),
        "d": params_digest(fitted.d),
        "rows": fitted.rows,
        "selected_step": fitted.selected_step,
    }
    Path(f"result_rank{info.rank}.json").write_text(json.dumps(result))
    if info.is_main:
        save_checkpoint(args.out, config, {"g": fitted.g.state_dict(), "d": fitted.d.state_dict()})
    fitted.finish()
    if info.enabled:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
