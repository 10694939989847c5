"""Resumable, deterministic and distributed training plumbing (tagan.training)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from tagan import training
from tagan.utils import atomic_path

ROOT = Path(__file__).resolve().parents[1]
TOY = ROOT / "tests" / "toy_gan.py"


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "TAGAN_RESUME_DIR": ".resume"}


def _toy(tmp_path: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, str(TOY), *args]
    proc = subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120)
    if check:
        assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def _digests(stdout: str) -> dict[int, str]:
    return {int(r): d for r, d in re.findall(r"rank (\d+) digest (\S+ \S+)", stdout)}


def _popen_until(tmp_path: Path, line: str, *args: str) -> subprocess.Popen[str]:
    """Start the toy run and return once it printed `line` (it is still running)."""
    proc = subprocess.Popen(
        [sys.executable, str(TOY), *args], cwd=tmp_path, env=_env(), stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    for out in proc.stdout:
        if out.strip() == line:
            return proc
    raise AssertionError(f"toy run ended (rc {proc.wait()}) before printing {line!r}")


# --- deterministic batches -------------------------------------------------------------------


def test_batch_indices_are_deterministic_and_cover_each_epoch() -> None:
    n, bs, seed = 50, 8, 3
    per_epoch = training.steps_per_epoch(n, bs)
    epoch0 = torch.cat([training.batch_indices(n, bs, s, seed) for s in range(per_epoch)])
    assert len(set(epoch0.tolist())) == per_epoch * bs  # no repeats inside an epoch
    again = torch.cat([training.batch_indices(n, bs, s, seed) for s in range(per_epoch)])
    assert torch.equal(epoch0, again)
    epoch1 = torch.cat([training.batch_indices(n, bs, s, seed) for s in range(per_epoch, 2 * per_epoch)])
    assert not torch.equal(epoch0, epoch1)  # reshuffled every epoch
    assert not torch.equal(epoch0, torch.cat([training.batch_indices(n, bs, s, 4) for s in range(per_epoch)]))


def test_rank_slices_partition_the_global_batch() -> None:
    world = 2
    for step in (0, 5, 17):
        full = training.batch_indices(40, 8, step, 1)
        parts = [training.batch_indices(40, 8, step, 1, training.DistInfo(r, world, r)) for r in range(world)]
        assert sorted(torch.cat(parts).tolist()) == sorted(full.tolist())
        assert all(len(p) == 8 // world for p in parts)


# --- Checkpointer in process -----------------------------------------------------------------


@pytest.fixture
def resume_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(training, "RESUME_DIR", tmp_path / ".resume")
    return tmp_path / ".resume"


def _objects(seed: int) -> dict[str, object]:
    torch.manual_seed(seed)
    model = nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    opt.step()
    sched.step()
    return {"model": model, "opt": opt, "sched": sched}


def test_checkpointer_restores_models_optimisers_schedulers_and_rngs(resume_dir: Path) -> None:
    config = {"lr": 0.1}
    saved = _objects(0)
    ckpt = training.Checkpointer("unit", config, every=5)
    ckpt.maybe_save(3, saved)  # not a multiple of 5
    assert not ckpt.path.exists()
    ckpt.maybe_save(5, saved, extra={"best": 1.5})
    expected_draw = torch.rand(3)  # what the RNG gives right after the save

    fresh = _objects(1)
    step, extra = training.Checkpointer("unit", config, every=5).load(fresh)
    assert (step, extra) == (5, {"best": 1.5})
    assert torch.equal(torch.rand(3), expected_draw)
    for a, b in zip(saved["model"].state_dict().values(), fresh["model"].state_dict().values()):
        assert torch.equal(a, b)
    assert fresh["opt"].state_dict()["state"][0]["step"] == saved["opt"].state_dict()["state"][0]["step"]
    assert fresh["sched"].get_last_lr() == saved["sched"].get_last_lr()


def test_checkpointer_ignores_another_configs_file_and_finish_removes_it(resume_dir: Path) -> None:
    training.Checkpointer("unit", {"lr": 0.1}, every=1).save(4, _objects(0))
    other = training.Checkpointer("unit", {"lr": 0.2}, every=1)
    assert other.load(_objects(1)) == (0, {})
    same = training.Checkpointer("unit", {"lr": 0.1}, every=1)
    assert same.load(_objects(1))[0] == 4
    same.finish()
    assert not same.path.exists()


def test_checkpointer_drops_temp_files_left_by_a_killed_save(resume_dir: Path) -> None:
    ckpt = training.Checkpointer("unit", {}, every=1)
    ckpt.save(2, _objects(0))
    stale = ckpt.path.parent / f".{ckpt.path.name}.abc123.tmp"
    stale.write_bytes(b"half a checkpoi")
    assert ckpt.load(_objects(1))[0] == 2
    assert not stale.exists()


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    target = tmp_path / "model.pt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("partial")
        raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]


def test_torch_save_is_byte_identical_across_runs(tmp_path: Path) -> None:
    from tagan.utils import torch_save

    obj = {"w": torch.arange(6.0).view(2, 3), "config": {"z": 4}}
    torch_save(tmp_path / "a.pt", obj)
    torch_save(tmp_path / "b.pt", obj)  # each write goes through its own random temp file name
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()


def test_write_json_writes_standard_json_with_null_for_nan(tmp_path: Path) -> None:
    import json

    import numpy as np

    from tagan.utils import write_json

    path = tmp_path / "m.json"
    write_json(path, {"p": float("nan"), "q": np.float32(0.5), "r": [float("inf"), 1], "s": np.int64(3)})
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"p": None, "q": 0.5, "r": [None, 1], "s": 3}


# --- real processes: SIGKILL and torchrun ----------------------------------------------------


@pytest.mark.slow
def test_sigkill_mid_training_then_restart_is_bit_identical(tmp_path: Path) -> None:
    """Kill -9 between checkpoints, start again: same weights as a run that never stopped."""
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    straight.mkdir()
    killed.mkdir()
    reference = subprocess.Popen(
        [sys.executable, str(TOY), "--steps", "30", "--every", "5"], cwd=straight, env=_env(),
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    proc = _popen_until(killed, "rank 0 done 13", "--steps", "30", "--every", "5", "--sleep", "0.1")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    (resume,) = (killed / ".resume").iterdir()  # one complete file, no temp leftovers
    assert torch.load(resume, weights_only=True)["step"] in (10, 15)  # last save before the kill
    assert not (killed / "out").exists()

    expected = _digests(reference.communicate(timeout=120)[0])[0]
    resumed = _toy(killed, "--steps", "30", "--every", "5")
    assert "resumed from" in resumed.stderr
    assert "rank 0 done 1\n" not in resumed.stdout  # finished steps were not redone
    assert _digests(resumed.stdout)[0] == expected
    assert not resume.exists()  # finish() removed the resume file
    saved = torch.load(killed / "out" / "model.pt", weights_only=True)
    for a, b in zip(
        saved["state_dict"]["g"].values(),
        torch.load(straight / "out" / "model.pt")["state_dict"]["g"].values(),
    ):
        assert torch.equal(a, b)


@pytest.mark.slow
def test_sigkill_while_writing_a_checkpoint_never_leaves_a_partial_file(tmp_path: Path) -> None:
    """kill -9 the moment a save's temp file appears: the resume file still loads, the restart cleans up."""
    args = ("--steps", "1000", "--every", "1", "--width", "20000")
    proc = _popen_until(tmp_path, "rank 0 done 2", *args)  # saves of steps 1 and 2 completed
    resume = tmp_path / ".resume"
    deadline = time.monotonic() + 60
    while not list(resume.glob(".*.tmp")):  # a save of a later step is under way
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.001)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    (final,) = resume.glob("*.pt")
    (partial,) = resume.glob(".*.tmp")
    state = torch.load(final, weights_only=True)  # the previous complete save, untouched
    assert state["step"] >= 2 and set(state["objects"]) == {"g", "d", "opt_g", "opt_d", "sched_g"}

    resumed = _toy(tmp_path, *args, "--crash-at", str(state["step"] + 1), check=False)
    assert f"at step {state['step']}" in resumed.stderr
    assert not partial.exists()  # the restart dropped the dead save's temp file
    assert torch.load(final, weights_only=True)["step"] == state["step"] + 1


def _torchrun(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(TOY),
        *args,
    ]
    env = {**_env(), "TOY_RESUME_DIR_PER_RANK": "1"}
    return subprocess.Popen(
        cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _finish(proc: subprocess.Popen[str], ok: bool = True) -> tuple[str, str]:
    stdout, stderr = proc.communicate(timeout=180)
    assert (proc.returncode == 0) == ok, stderr[-3000:]
    return stdout, stderr


@pytest.mark.slow
def test_torchrun_two_ranks_stay_in_sync_resume_and_only_rank0_writes(tmp_path: Path) -> None:
    """gloo on CPU: same weights on both ranks, files from rank 0 only, a crashed job resumes identically."""
    straight, crashed = tmp_path / "straight", tmp_path / "crashed"
    straight.mkdir()
    crashed.mkdir()
    straight_run = _torchrun(straight, "--steps", "16", "--every", "4")
    crashed_run = _torchrun(crashed, "--steps", "16", "--every", "4", "--crash-at", "10")
    digests = _digests(_finish(straight_run)[0])
    _finish(crashed_run, ok=False)
    assert set(digests) == {0, 1} and digests[0] == digests[1]  # DDP kept the ranks in sync
    assert (straight / "out" / "model.pt").exists()
    assert [p.name for p in (crashed / "resume_rank0").iterdir()]  # rank 0 wrote the resume file
    assert not (crashed / "resume_rank1").exists()  # rank 1 wrote nothing
    assert not (crashed / "out").exists()

    # Rank 1's resume dir is empty: it gets rank 0's state by broadcast (no shared disk needed).
    stdout, stderr = _finish(_torchrun(crashed, "--steps", "16", "--every", "4"))
    assert stderr.count("resumed from") == 2
    assert _digests(stdout) == digests
    assert not (crashed / "resume_rank1").exists()


@pytest.mark.slow
def test_real_mnist_cgan_stage_killed_and_restarted_ends_bit_identical(tmp_path: Path) -> None:
    """The real `python -m pipeline.mnist_cgan` on a tiny config: kill -9 after its first resume save."""
    import yaml
    from test_mnist_cgan import write_fixtures  # tests/ is on sys.path

    npz, clf = write_fixtures(tmp_path)
    tiny = dict(g_width=8, d_width=8, batch_size=16, steps=60, eval_samples=40, select_every=0, select_samples=20,
                select_val_images=16, checkpoint_every=10, log_every=5, ema_decay=0.5, sigma_grid=[0.1, 0.2])  # fmt: skip
    procs = {}
    for name in ("straight", "killed"):
        run_dir = tmp_path / name
        run_dir.mkdir()
        params = {"runtime": {"device": "cpu", "num_threads": 1}, "mnist_cgan": {"strong": tiny}}
        (run_dir / "params.yaml").write_text(yaml.safe_dump(params))
        cmd = [sys.executable, "-m", "pipeline.mnist_cgan", "--preset", "strong", "--data", str(npz),
               "--classifier", str(clf), "--model", "model.pt", "--metrics", "m.json", "--plot", "loss.csv",
               "--samples", "grid.png"]  # fmt: skip
        procs[name] = (cmd, subprocess.Popen(cmd, cwd=run_dir, env=_env(), stdout=subprocess.DEVNULL,
                                             stderr=subprocess.PIPE, text=True))  # fmt: skip
    cmd, killed = procs["killed"]
    resume = tmp_path / "killed" / ".resume"
    deadline = time.monotonic() + 120
    while not list(resume.glob("*.pt")):  # the first periodic save landed (atomically: only whole files)
        assert killed.poll() is None and time.monotonic() < deadline, "stage ended before its first save"
        time.sleep(0.002)
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=30)
    (saved,) = resume.glob("*.pt")
    step = torch.load(saved, weights_only=True)["step"]
    assert 10 <= step < 60 and not (tmp_path / "killed" / "model.pt").exists()

    _, straight = procs["straight"]
    assert straight.wait(timeout=300) == 0, straight.stderr.read()[-2000:]  # type: ignore[union-attr]
    again = subprocess.run(
        cmd, cwd=tmp_path / "killed", env=_env(), capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resumed from" in again.stderr
    a = torch.load(tmp_path / "straight" / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "killed" / "model.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not list(resume.glob("*.pt"))  # finished: resume file removed
