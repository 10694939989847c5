"""Resumable, deterministic and distributed training plumbing (tagan.training), in process and in real
killed / resumed / torchrun subprocesses (tests/toy_gan.py and the mnist_cgan stage)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from tagan import training
from tagan.files import atomic_path

ROOT = Path(__file__).resolve().parents[1]
TOY = ROOT / "tests" / "toy_gan.py"
HOOKS = ROOT / "tests" / "crash_hooks.py"


def _env(**hooks: int) -> dict[str, str]:
    """The children's environment; `hooks` set tests/crash_hooks.py's crash points (pause_after_save=N...)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "TAGAN_RESUME_DIR": ".resume"}
    for key in ("PAUSE_AFTER_SAVE", "EXIT_AFTER_SAVE", "KILL_IN_SAVE"):
        env.pop(f"TAGAN_TEST_{key}", None)
    env.update({f"TAGAN_TEST_{k.upper()}": str(v) for k, v in hooks.items()})
    return env


def _toy(cwd: Path, *args: str, ok: bool = True, **hooks: int) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, str(TOY), *args],
        cwd=cwd,
        env=_env(**hooks),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert (proc.returncode == 0) == ok, proc.stderr[-3000:]
    return proc


def _result(cwd: Path, rank: int = 0) -> dict:
    return json.loads((cwd / f"result_rank{rank}.json").read_text())


def _kill_when_paused(proc: subprocess.Popen[str], cwd: Path, step: int, timeout: float = 300) -> None:
    """Wait until the child blocks after its save of `step` (it wrote paused-<step>), then SIGKILL it."""
    marker, deadline = cwd / f"paused-{step}", time.monotonic() + timeout
    while not marker.exists():  # the child stays blocked once it is there: no race with the kill
        assert proc.poll() is None, f"child ended (rc {proc.returncode}) before pausing at step {step}"
        assert time.monotonic() < deadline, f"child did not reach step {step} in {timeout}s"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL


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

    from tagan.files import write_json

    path = tmp_path / "m.json"
    write_json(path, {"p": float("nan"), "q": np.float32(0.5), "r": [float("inf"), 1], "s": np.int64(3)})
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"p": None, "q": 0.5, "r": [None, 1], "s": 3}


# --- real processes: SIGKILL, a kill inside a save, torchrun ---------------------------------


@pytest.fixture(scope="module")
def straight_toy(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The toy run that never stopped (30 steps, a resume file every 5): the reference result."""
    cwd = tmp_path_factory.mktemp("straight")
    _toy(cwd, "--steps", "30", "--every", "5")
    return _result(cwd)


@pytest.mark.slow
def test_sigkill_mid_training_then_restart_is_bit_identical(tmp_path: Path, straight_toy: dict) -> None:
    """Killed -9 at a known step after its save of step 10, then started again: same weights, EMA, selected
    model and loss rows as a run that never stopped."""
    proc = subprocess.Popen(
        [sys.executable, str(TOY), "--steps", "30", "--every", "5"], cwd=tmp_path, env=_env(pause_after_save=10),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    _kill_when_paused(proc, tmp_path, 10)
    (resume,) = (tmp_path / ".resume").iterdir()  # one complete file, no temp leftovers
    assert torch.load(resume, weights_only=True)["step"] == 10
    assert not (tmp_path / "out").exists() and not (tmp_path / "result_rank0.json").exists()

    resumed = _toy(tmp_path, "--steps", "30", "--every", "5")
    assert "at step 10" in resumed.stderr  # resumed there, finished steps were not redone
    assert _result(tmp_path) == straight_toy
    assert not resume.exists()  # finish() removed the resume file


@pytest.mark.slow
def test_sigkill_inside_a_checkpoint_save_never_leaves_a_partial_file(
    tmp_path: Path, straight_toy: dict
) -> None:
    """SIGKILL between writing the save of step 10 and its rename: step 5's file stays whole and loads,
    the restart drops the dead save's temp file and ends bit-identical."""
    killed = _toy(tmp_path, "--steps", "30", "--every", "5", ok=False, kill_in_save=10)
    assert killed.returncode == -signal.SIGKILL
    resume = tmp_path / ".resume"
    (final,) = resume.glob("*.pt")
    (partial,) = resume.glob(".*.tmp")
    assert partial.stat().st_size > 0  # the temp file was written in full, only the rename was missing
    state = torch.load(final, weights_only=True)  # the previous complete save, untouched
    assert state["step"] == 5 and set(state["objects"]) == {"g", "d", "opt_g", "opt_d", "ema"}
    assert torch.load(partial, weights_only=True)["step"] == 10  # the dead save itself was complete

    resumed = _toy(tmp_path, "--steps", "30", "--every", "5")
    assert "at step 5" in resumed.stderr
    assert not partial.exists()  # the restart dropped the dead save's temp file
    assert _result(tmp_path) == straight_toy


def _loopback_env(**hooks: int) -> dict[str, str]:
    """The launcher's variables (torchrun reads PET_*; a parent job's MASTER_*/RANK would mislead the ranks)
    dropped, and gloo kept on the loopback interface (a container's hostname may resolve to nothing)."""
    drop = ("PET_", "MASTER_", "TORCHELASTIC_", "TORCH_DISABLE_SHARE_RDZV_TCP_STORE", "GLOO_SOCKET_IFNAME")
    env = {k: v for k, v in _env(**hooks).items() if not k.startswith(drop)}
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK"):
        env.pop(key, None)
    if "lo" in {name for _, name in socket.if_nameindex()}:
        env["GLOO_SOCKET_IFNAME"] = "lo"
    return env


def _torchrun(cwd: Path, logs: Path, *args: str, ok: bool = True, **hooks: int) -> dict[int, str]:
    """A 2-rank gloo job on CPU (one at a time: two jobs would put 4 ranks on the machine's 2 cores); returns
    each rank's own stderr, which torchrun writes to its own file under `logs` (no interleaved streams).

    --standalone binds the rendezvous store on port 0 (the kernel picks a free port, held for the whole job,
    and the ranks connect to that same store: no free-port race), on 127.0.0.1."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "--local-addr", "127.0.0.1", "--log-dir", str(logs), "--redirects", "2", str(TOY), *args]  # fmt: skip
    env = {**_loopback_env(**hooks), "TOY_RESUME_DIR_PER_RANK": "1"}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    per_rank = {}
    for rank in (0, 1):
        (log,) = logs.glob(f"*/attempt_0/{rank}/stderr.log")  # one job, one attempt (no restarts)
        per_rank[rank] = log.read_text()
    detail = f"{proc.stderr[-2000:]}\n--- rank 0:\n{per_rank[0][-2000:]}\n--- rank 1:\n{per_rank[1][-2000:]}"
    assert (proc.returncode == 0) == ok, detail
    return per_rank


@pytest.mark.slow
def test_torchrun_two_ranks_stay_in_sync_resume_and_only_rank0_writes(tmp_path: Path) -> None:
    """gloo on CPU: same weights on both ranks, files from rank 0 only, a crashed job resumes identically."""
    straight, crashed = tmp_path / "straight", tmp_path / "crashed"
    straight.mkdir()
    crashed.mkdir()
    args = ("--steps", "16", "--every", "4")
    logs = _torchrun(straight, tmp_path / "logs-straight", *args)
    assert not any("resumed from" in log for log in logs.values())  # a fresh start
    reference = [_result(straight, r) for r in (0, 1)]
    assert reference[0] == reference[1]  # DDP kept the ranks in sync (each rank wrote its own file)
    assert (straight / "out" / "model.pt").exists()

    # every rank exits right after the save of step 8
    _torchrun(crashed, tmp_path / "logs-crashed", *args, ok=False, exit_after_save=8)
    assert [p.name for p in (crashed / "resume_rank0").iterdir()]  # rank 0 wrote the resume file
    assert not (crashed / "resume_rank1").exists()  # rank 1 wrote nothing
    assert not (crashed / "out").exists()
    assert not list(crashed.glob("result_rank*.json"))

    # Rank 1's resume dir is empty: it gets rank 0's state by broadcast (no shared disk needed).
    logs = _torchrun(crashed, tmp_path / "logs-resumed", *args)
    for rank, log in logs.items():
        resumed = [line for line in log.splitlines() if "resumed from" in line]
        assert len(resumed) == 1 and resumed[0].endswith("at step 8"), (rank, log[-2000:])
    assert [_result(crashed, r) for r in (0, 1)] == reference
    assert not (crashed / "resume_rank1").exists()


@pytest.mark.slow
def test_real_mnist_cgan_stage_killed_and_restarted_ends_bit_identical(tmp_path: Path) -> None:
    """The real `python -m pipeline.mnist_cgan` on a tiny config (EMA, model selection, max-norm), killed -9
    after its save of step 30 (past a selection): same checkpoint, loss rows and metrics as a straight run."""
    import yaml
    from test_mnist_cgan import write_fixtures  # tests/ is on sys.path

    npz, clf = write_fixtures(tmp_path)
    tiny = {
        "model": {"g_width": 8, "d_width": 8},
        "optim": {"max_norm": 5.0},
        "train": {"batch_size": 16, "steps": 60, "select_every": 20, "checkpoint_every": 10, "log_every": 5,
                  "ema_decay": 0.5},
        "eval_samples": 40, "select_samples": 20, "select_val_images": 16, "sigma_grid": [0.1, 0.2],
    }  # fmt: skip
    args = ["pipeline.mnist_cgan", "--preset", "strong", "--data", str(npz), "--classifier", str(clf),
            "--model", "model.pt", "--metrics", "m.json", "--plot", "loss.csv", "--samples", "grid.png"]  # fmt: skip
    for name in ("straight", "killed"):
        (tmp_path / name).mkdir()
        params = {"runtime": {"device": "cpu", "num_threads": 1}, "mnist_cgan": {"strong": tiny}}
        (tmp_path / name / "params.yaml").write_text(yaml.safe_dump(params))

    def stage(name: str, **hooks: int) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, str(HOOKS), *args], cwd=tmp_path / name, env=_env(**hooks),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip

    killed_dir = tmp_path / "killed"
    _kill_when_paused(stage("killed", pause_after_save=30), killed_dir, 30)
    (saved,) = (killed_dir / ".resume").glob("*.pt")
    state = torch.load(saved, weights_only=True)
    assert (
        state["step"] == 30 and state["extra"]["best"]["step"] == 20
    )  # a selection happened before the kill
    assert not (killed_dir / "model.pt").exists()

    for name in ("straight", "killed"):  # one at a time
        proc = stage(name)
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
    assert "at step 30" in err
    a = torch.load(tmp_path / "straight" / "model.pt", weights_only=True)
    b = torch.load(killed_dir / "model.pt", weights_only=True)
    assert a["state_dict"].keys() == b["state_dict"].keys()
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    assert a["selected_step"] == b["selected_step"]
    assert (tmp_path / "straight" / "loss.csv").read_text() == (killed_dir / "loss.csv").read_text()
    timing = {"train_seconds", "steps_per_second", "eval_seconds", "eval_total_seconds"}
    m_a, m_b = (json.loads((tmp_path / n / "m.json").read_text()) for n in ("straight", "killed"))
    assert {k: v for k, v in m_a.items() if k not in timing} == {
        k: v for k, v in m_b.items() if k not in timing
    }
    assert not list((killed_dir / ".resume").glob("*.pt"))  # finished: resume file removed
