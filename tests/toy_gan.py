"""A tiny GAN trained the way the pipeline's GAN stages train (used by test_training.py in subprocesses).

It uses the shared plumbing exactly as a stage does: seed_everything, batch_indices, Checkpointer,
init_distributed/wrap for torchrun. Flags let a test slow it down (to SIGKILL it mid-run), stop it
abruptly, and make its resume file big (to kill it while a checkpoint is being written).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import sys
import time
from pathlib import Path

import torch
from torch import nn

# Each rank may get its own resume dir (set before tagan.training reads TAGAN_RESUME_DIR), so a
# test can see which ranks wrote files.
if os.environ.get("TOY_RESUME_DIR_PER_RANK"):
    os.environ["TAGAN_RESUME_DIR"] = f"resume_rank{os.environ.get('RANK', '0')}"

from tagan import training  # noqa: E402
from tagan.utils import save_checkpoint, seed_everything, setup_logging  # noqa: E402

log = logging.getLogger("toy_gan")
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
    ap.add_argument("--every", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--sleep", type=float, default=0.0, help="seconds per step (to kill it mid-run)")
    ap.add_argument("--crash-at", type=int, default=-1, help="os._exit(1) after this many steps")
    ap.add_argument("--out", type=Path, default=Path("out/model.pt"))
    args = ap.parse_args()
    setup_logging()
    torch.set_num_threads(1)

    device = torch.device("cpu")
    info = training.init_distributed(device)
    seed = 7
    seed_everything(seed)
    data_gen = torch.Generator().manual_seed(seed)
    x = torch.randn(200, X_DIM, generator=data_gen)  # (N, X)
    y = torch.randint(0, N_CLASSES, (200,), generator=data_gen)  # (N,)
    onehot = nn.functional.one_hot(y, N_CLASSES).float()  # (N, C)

    g, d = build(args.width)
    g, d = training.wrap(g, info), training.wrap(d, info)
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-3, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-3, betas=(0.5, 0.999))
    sched_g = torch.optim.lr_scheduler.StepLR(opt_g, step_size=10, gamma=0.9)
    objects = {"g": g, "d": d, "opt_g": opt_g, "opt_d": opt_d, "sched_g": sched_g}
    config = {"steps": args.steps, "batch_size": args.batch_size, "width": args.width, "seed": seed}
    ckpt = training.Checkpointer("toy_gan", config, every=args.every, info=info)
    start, _ = ckpt.load(objects)
    bce = nn.BCEWithLogitsLoss()

    for step in range(start, args.steps):
        idx = training.batch_indices(len(x), args.batch_size, step, seed, info)
        real, cond = x[idx], onehot[idx]  # (b, X), (b, C)
        z = torch.randn(len(idx), Z_DIM)  # (b, Z) from the global RNG, restored on resume
        fake = g(torch.cat([z, cond], 1))  # (b, X)
        logits = d(torch.cat([torch.cat([real, fake.detach()]), torch.cat([cond, cond])], 1))  # (2b, 1)
        target = torch.cat([torch.ones(len(idx), 1), torch.zeros(len(idx), 1)])
        opt_d.zero_grad()
        bce(logits, target).backward()
        opt_d.step()
        opt_g.zero_grad()
        bce(d(torch.cat([fake, cond], 1)), torch.ones(len(idx), 1)).backward()
        opt_g.step()
        sched_g.step()
        ckpt.maybe_save(step + 1, objects)
        print(f"rank {info.rank} done {step + 1}", flush=True)
        if step + 1 == args.crash_at:
            os._exit(1)
        if args.sleep:
            time.sleep(args.sleep)

    print(f"rank {info.rank} digest {params_digest(g)} {params_digest(d)}", flush=True)
    if info.is_main:
        save_checkpoint(
            args.out, config, {"g": training.unwrap(g).state_dict(), "d": training.unwrap(d).state_dict()}
        )
    ckpt.finish()
    if info.enabled:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
