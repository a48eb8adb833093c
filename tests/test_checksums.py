"""Checksummed checkpoints (arlif.runner.checksum): a flipped byte anywhere in last.pt or best.pt, the tensor
data included, is caught on every load path (resume, eval, the figure and table scripts that evaluate
checkpoints; a search trial's resume, where the trial fails and the sweep goes on) with one line naming the file,
the checksum expected and what to do, and the run folder is left as it was.  Checkpoints written before
checksums still load, with one warning."""

import hashlib
import importlib.util
import logging
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
import yaml

from arlif.errors import CheckpointError
from arlif.runner import checksum
from arlif.runner.checkpoint import load_checkpoint, save_checkpoint
from arlif.runner.config import CONF_DIR, compose
from arlif.runner.evaluation import evaluate_checkpoint
from arlif.runner.training import train
from helpers import tiny_run
from test_search import TINY, finish, read_trials, start, sweep_args

REPO = CONF_DIR.parent
RUN = tiny_run()  # one epoch


@pytest.fixture
def run_dir(trained, tmp_path) -> Path:
    shutil.copytree(trained, tmp_path / "run")
    return tmp_path / "run"


def folder_digest(folder: Path) -> str:
    """SHA-256 of every file's path and bytes under `folder`."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def offsets(path: Path) -> dict[str, int]:
    """Byte offsets in every part of a sealed checkpoint: zip headers, the pickled tree, the middle of the
    largest tensor's data, the central directory, the archive's end record, the checksum trailer."""
    data = path.read_bytes()
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
    largest = max(infos, key=lambda i: i.compress_size)
    pickle = next(i for i in infos if i.filename.endswith("/data.pkl"))
    archive_end = len(data) - checksum.TRAILER_SIZE
    return {"first zip header": 0, "pickled tree": pickle.header_offset + 100,
            "tensor data": largest.header_offset + 64 + largest.compress_size // 2,
            "central directory": data.rindex(b"PK\x01\x02") + 20, "end record": archive_end - 1,
            "trailer magic": archive_end + 3, "trailer checksum": len(data) - 1}


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def damaged(path: Path, advice: str) -> str:
    """A pattern of the one-line error for a damaged checkpoint: its start and its advice."""
    return rf"^{re.escape(f'checkpoint {path} is damaged: ')}[^\n]+{re.escape(f'; the file was left as it is: {advice}')}$"


def test_a_flipped_byte_anywhere_is_named_with_the_checksum_expected(run_dir):
    last, best = run_dir / "last.pt", run_dir / "best.pt"
    intact = last.read_bytes()
    assert checksum.verify(last) and load_checkpoint(last)["epoch"] == 1
    where = offsets(last)
    resume_best = f"resume from the run folder's other checkpoint (trainer.resume={best}) or start fresh in a new run folder"
    for part, offset in where.items():
        flip(last, offset)
        with pytest.raises(CheckpointError, match=damaged(last, resume_best)) as err:
            load_checkpoint(last)
        assert "\n" not in str(err.value) and err.value.exit_code == 2  # train.py and eval.py: one line, exit 2
        if part == "tensor data":
            assert "has CRC-32" in str(err.value) and "but the checksum saved with it is" in str(err.value)
        last.write_bytes(intact)
    flip(best, where["tensor data"])
    with pytest.raises(CheckpointError, match=damaged(best, f"evaluate the run folder's other checkpoint "
                                                            f"(checkpoint={last}) or pick another checkpoint")):
        load_checkpoint(best, "evaluate")
    last.unlink()
    with pytest.raises(CheckpointError, match=damaged(best, "start fresh in a new run folder")):
        load_checkpoint(best)


def test_every_load_path_refuses_a_damaged_checkpoint_and_leaves_the_folder_alone(run_dir, tmp_path):
    """Resume (also from best.pt), eval.py, Fig. 2 and the energy table (which evaluate checkpoints)."""
    last, best = run_dir / "last.pt", run_dir / "best.pt"
    flip(last, offsets(last)["tensor data"])
    flip(best, offsets(best)["pickled tree"])
    before = folder_digest(run_dir)
    loads = {
        last: [lambda: train(compose([*RUN, "trainer.epochs=2", "trainer.resume=auto"]), run_dir)],
        best: [lambda: train(compose([*RUN, "trainer.epochs=2", f"trainer.resume={best}"]), run_dir),
               lambda: evaluate_checkpoint(compose([f"checkpoint={run_dir}"], "eval"), tmp_path / "eval"),
               lambda: script("fig2_firing_rates", run_dir, "--out", tmp_path / "fig2"),
               lambda: script("make_energy_table", run_dir, "--out", tmp_path / "energy")],
    }
    for path, calls in loads.items():
        for call in calls:
            with pytest.raises(CheckpointError, match=f"^{re.escape(f'checkpoint {path} is damaged: ')}"):
                call()
            assert folder_digest(run_dir) == before


def script(name, *argv):
    """scripts/<name>.py's main, in this process, as its command line would run it."""
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(module.parse_args([str(a) for a in argv]))


@pytest.mark.slow
def test_train_py_exits_2_with_one_line(run_dir):
    last = run_dir / "last.pt"
    flip(last, offsets(last)["tensor data"])
    ours = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    out = subprocess.run([sys.executable, "train.py", *RUN, "trainer.epochs=2", "trainer.resume=auto",
                          f"hydra.run.dir={run_dir}"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith(f"error: checkpoint {last} is damaged: record ") and out.stderr.count("\n") == 1
    assert out.stderr.endswith(f"(trainer.resume={run_dir / 'best.pt'}) or start fresh in a new run folder\n")
    # the run's files as they were (Hydra itself writes .hydra/ and train.log at every launch)
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file() and p.name != "train.log"} == ours


def test_a_checkpoint_without_checksum_loads_with_one_warning(run_dir, caplog):
    last = run_dir / "last.pt"
    torch.save(load_checkpoint(last), last)  # as arlif wrote it before checksums
    assert not checksum.verify(last)
    with caplog.at_level(logging.WARNING, logger="arlif.runner.checkpoint"):
        assert load_checkpoint(last)["epoch"] == load_checkpoint(last)["epoch"] == 1
    assert [r.getMessage() for r in caplog.records] == [
        f"checkpoint {last} has no checksum (it was written before arlif checked them): it is read unverified; "
        "a run resumed from it saves its next checkpoints with one"]


def test_save_computes_the_records_crcs_even_when_torch_is_told_not_to(tmp_path):
    """The records' CRC-32s are half of the checksum: a save computes them whatever torch's global option."""
    torch.serialization.set_crc32_options(False)
    try:
        save_checkpoint({"model": {"w": torch.ones(4)}, "epoch": 1, "config": {}}, tmp_path / "last.pt")
    finally:
        torch.serialization.set_crc32_options(True)
    assert checksum.verify(tmp_path / "last.pt")


@pytest.mark.slow
def test_every_byte_of_a_checkpoint_is_covered(tmp_path):
    """Each byte of a small checkpoint flipped in turn (three ways) fails the check."""
    path = tmp_path / "last.pt"
    save_checkpoint({"model": {"w": torch.randn(16, 16)}, "epoch": 1, "config": {"seed": 0}}, path)
    intact = path.read_bytes()
    for offset in range(len(intact)):
        for mask in (0x01, 0x80, 0xFF):
            data = bytearray(intact)
            data[offset] ^= mask
            path.write_bytes(bytes(data))
            with pytest.raises(CheckpointError, match="is damaged|cannot be read"):
                load_checkpoint(path)


# A sweep with a FAIL trial runs end to end in test_search.py, and a refused checkpoint's error line reaching
# Optuna as the reason in test_every_way_a_trial_ends_is_told_to_optuna; this joins the two (`-m slow`).
@pytest.mark.slow
def test_a_damaged_trial_checkpoint_fails_that_trial_and_the_sweep_goes_on(trained, tmp_path):
    """A search trial's resume is a load path too: trial 0's damaged last.pt makes it FAIL with the error line as
    its reason, the file is left alone, trial 1 completes, and the report lists the failed trial."""
    conf = tmp_path / "conf"
    (conf / "hparams_search").mkdir(parents=True)
    (conf / "hparams_search" / "tiny.yaml").write_text(TINY)
    study = tmp_path / "study"
    trial = study / "trial-000"
    trial.mkdir(parents=True)
    last = trial / "last.pt"
    shutil.copyfile(trained / "last.pt", last)
    flip(last, offsets(last)["tensor data"])
    damaged_bytes = last.read_bytes()
    args = sweep_args(conf, study, "optimizer.lr=0.1", "hydra.sweeper.n_trials=2", "trainer.epochs=1",
                      "hydra.sweeper.pruner.name=none", "hydra.sweeper.plots=false")
    code, out = finish(start(["train.py", *args]))
    assert code == 0, out[-3000:]
    assert last.read_bytes() == damaged_bytes
    rows = {row["number"]: row for row in read_trials(study)}
    assert (rows["0"]["state"], rows["1"]["state"]) == ("FAIL", "COMPLETE")
    assert re.fullmatch(damaged(last, "start fresh in a new run folder").replace("^", "^error: ", 1),
                        rows["0"]["reason"]), rows["0"]["reason"]
    report = yaml.safe_load((study / "optimization_results.yaml").read_text())
    assert report["failed"] == [{"trial": 0, "reason": rows["0"]["reason"], "run_dir": str(trial)}]
    assert report["trials"] == {"COMPLETE": 1, "FAIL": 1}
