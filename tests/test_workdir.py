"""The workdir: one run at a time, never another experiment's checkpoints, never a file medjax
did not write deleted, and plain messages for folders that cannot be used or disks that fill."""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys

import orbax.checkpoint as ocp
import pytest

from medjax.cli import main_guard
from medjax.errors import Interrupted, TrainingError, WorkdirError
from medjax.train import workdir as wd
from medjax.train.checkpoint import Checkpoints
from medjax.train.loop import train_and_evaluate

from .conftest import ROOT, interrupt_at, tiny_config


def _interrupted_run(workdir, config, step=4, sig=signal.SIGINT):
    with pytest.raises(Interrupted):
        train_and_evaluate(config, str(workdir), hooks=[interrupt_at(step, sig)])


def test_a_second_run_on_a_workdir_in_use_is_refused_naming_the_first(tmp_path):
    wd.make(str(tmp_path))
    with (
        wd.Lock(str(tmp_path)),
        pytest.raises(WorkdirError, match=f"in use by process {os.getpid()} on host"),
    ):
        train_and_evaluate(tiny_config(), str(tmp_path))
    assert not (tmp_path / "config.json").exists()  # the refused run wrote nothing


def test_the_lock_goes_with_a_killed_process(tmp_path):
    """An advisory lock: a run killed without any chance to clean up blocks no later run."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; sys.path.insert(0, sys.argv[1]); from medjax.train import workdir;"
            "lock = workdir.Lock(sys.argv[2]); print('locked', flush=True); time.sleep(600)",
            str(ROOT),
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(WorkdirError, match=f"in use by process {holder.pid}"):
        wd.Lock(str(tmp_path))
    holder.kill()
    holder.wait()
    wd.Lock(str(tmp_path)).release()


def test_a_failed_run_releases_its_workdir_and_the_next_one_resumes(tmp_path):
    """Whatever ends a run (here an error right after the checkpoint of step 6), its checkpoint
    managers are closed and its lock released: the same process can go on in that workdir."""

    def fail(step, state):
        if step == 6:
            raise RuntimeError("boom")

    config = tiny_config(**{"train.checkpoint_every_minutes": 0.0})
    with pytest.raises(RuntimeError, match="boom"):
        train_and_evaluate(config, str(tmp_path), hooks=[fail])
    wd.Lock(str(tmp_path)).release()  # free again
    train_and_evaluate(config, str(tmp_path))
    card = json.loads((tmp_path / "run_card.json").read_text())
    assert card["resumed_from_step"] == 6


def test_sigterm_saves_a_checkpoint_like_ctrl_c(tmp_path):
    with pytest.raises(Interrupted, match="SIGTERM at step 3: checkpoint saved") as info:
        train_and_evaluate(tiny_config(), str(tmp_path), hooks=[interrupt_at(3, signal.SIGTERM)])
    assert info.value.signal_name == "SIGTERM"
    ckpts = Checkpoints(str(tmp_path / "checkpoints"), 2, "auc", "max")
    assert ckpts.latest_step() == 3
    ckpts.close()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored


def test_checkpoints_of_another_config_are_refused_even_without_config_json(tmp_path):
    """A workdir copied and trimmed to its checkpoints must not resume a new experiment."""
    _interrupted_run(tmp_path, tiny_config())
    os.remove(tmp_path / "config.json")
    other = tiny_config(**{"optimizer.learning_rate": 0.01, "seed": 3})
    with pytest.raises(
        WorkdirError,
        match=r"checkpoint of step 4 was trained with another config "
        r"\(optimizer.learning_rate: 0.001 -> 0.01; seed: 0 -> 3\).*--overwrite",
    ):
        train_and_evaluate(other, str(tmp_path))
    # config.json replaced by hand to match does not fool it either
    wd.write_json(str(tmp_path / "config.json"), json.loads(other.to_json_best_effort()))
    with pytest.raises(WorkdirError, match="checkpoint of step 4 was trained with another"):
        train_and_evaluate(other, str(tmp_path))
    train_and_evaluate(other, str(tmp_path), overwrite=True)
    assert json.loads((tmp_path / "run_card.json").read_text())["resumed_from_step"] == 0


def test_the_same_config_resumes_without_config_json(tmp_path):
    _interrupted_run(tmp_path, tiny_config())
    os.remove(tmp_path / "config.json")
    train_and_evaluate(tiny_config(), str(tmp_path))
    assert json.loads((tmp_path / "run_card.json").read_text())["resumed_from_step"] == 4


def test_overwrite_deletes_only_what_medjax_wrote(tmp_path):
    mine = tmp_path / "checkpoints" / "model_epoch99.pt"
    mine.parent.mkdir()
    mine.write_bytes(b"someone's weights")
    for overwrite in (False, True):
        with pytest.raises(WorkdirError, match="medjax did not write \\(model_epoch99.pt\\)"):
            train_and_evaluate(tiny_config(), str(tmp_path), overwrite=overwrite)
    assert mine.read_bytes() == b"someone's weights"
    shutil.rmtree(tmp_path / "checkpoints")

    notes = tmp_path / "notes.txt"
    notes.write_text("keep me")
    train_and_evaluate(tiny_config(), str(tmp_path))
    train_and_evaluate(tiny_config(seed=1), str(tmp_path), overwrite=True)
    assert notes.read_text() == "keep me"
    assert json.loads((tmp_path / "config.json").read_text())["seed"] == 1


def test_a_resumed_run_drops_the_rows_past_its_checkpoint(tmp_path):
    """Rows logged after the checkpoint by the process that was killed (the last one torn
    mid-write) are not kept beside the rows the resumed run logs for the same steps."""
    config = tiny_config(**{"train.log_every_steps": 1, "train.checkpoint_every_minutes": 0.0})
    _interrupted_run(tmp_path, config, step=4)
    metrics = tmp_path / "metrics.jsonl"
    with open(metrics, "a") as f:  # what a process killed after step 4 could have left
        f.write(json.dumps({"step": 5, "loss": 123.0}) + "\n" + '{"step": 6, "lo')
    train_and_evaluate(config, str(tmp_path))
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    train_steps = [r["step"] for r in rows if "loss" in r]
    assert train_steps == list(range(1, 13)) and 123.0 not in [r.get("loss") for r in rows]


def test_unusable_workdirs_are_one_clear_error(tmp_path, monkeypatch):
    afile = tmp_path / "results"
    afile.write_text("")
    with pytest.raises(WorkdirError, match="is a file, not a folder"):
        train_and_evaluate(tiny_config(), str(afile))

    def read_only(path, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", path)

    monkeypatch.setattr(os, "makedirs", read_only)
    with pytest.raises(WorkdirError, match="cannot write to --workdir .* \\(Permission denied\\)"):
        train_and_evaluate(tiny_config(), str(tmp_path / "new"))


def test_a_full_disk_while_checkpointing_is_one_message_and_keeps_the_last_checkpoint(
    tmp_path, monkeypatch
):
    """Orbax reports a full disk from tensorstore as a ValueError carrying the OS error code."""
    real_save, saves = ocp.CheckpointManager.save, []

    def save(self, step, *args, **kwargs):
        saves.append(step)
        if len(saves) > 1:
            raise ValueError(
                'RESOURCE_EXHAUSTED: Error writing "w/0" in OCDBT database: Failed to write '
                "461169 bytes to file 7: No space left on device [os_error_code='28']"
            )
        return real_save(self, step, *args, **kwargs)

    monkeypatch.setattr(ocp.CheckpointManager, "save", save)
    config = tiny_config(**{"train.checkpoint_every_minutes": 0.0})
    with pytest.raises(WorkdirError, match="no space left on the device: a checkpoint in"):
        train_and_evaluate(config, str(tmp_path))
    monkeypatch.undo()
    train_and_evaluate(config, str(tmp_path))  # space freed: resumes from the one it had
    card = json.loads((tmp_path / "run_card.json").read_text())
    assert card["resumed_from_step"] == saves[0]


def test_disk_errors_outside_checkpoints_are_one_line(capsys):
    def full(argv):
        raise OSError(errno.ENOSPC, "No space left on device", "/runs/x/metrics.jsonl")

    with pytest.raises(SystemExit) as exit_info:
        main_guard(full, [])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.strip().splitlines()) == 1
    assert "no space left on the device (/runs/x/metrics.jsonl)" in err


def test_a_run_that_diverges_before_any_checkpoint_says_so(tmp_path):
    config = tiny_config(
        **{
            "optimizer.name": "sgd",
            "optimizer.learning_rate": 1e6,
            "optimizer.momentum": 0.0,
            "train.log_every_steps": 1,
            "train.eval_every_epochs": 10.0,
        }
    )
    with pytest.raises(TrainingError, match="no checkpoint had been saved yet") as info:
        train_and_evaluate(config, str(tmp_path))
    assert "step None" not in str(info.value)
