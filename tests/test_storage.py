"""A disk that refuses a write (full, read-only) ends a run, an evaluation, a sweep's report or the frame cache
with one `error:` line naming the file, the cause and what to do (exit 2), a truthful summary.json, no
temporary files and the earlier checkpoints intact; a resume after freeing space finishes the run.

The disks are real: a small tmpfs mounted for the test (which needs root and a sandbox that allows mounts;
elsewhere these tests skip), remounted read-only or larger as the test goes."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import torch

from arlif.data import build_data
from arlif.errors import StorageError
from arlif.reports.csv_rows import write_rows
from arlif.runner.checkpoint import load_checkpoint
from arlif.runner.config import CONF_DIR, compose
from arlif.runner.evaluation import evaluate_checkpoint
from arlif.runner.training import train
from arlif.search.report import write_report
from arlif.search.study import make_storage
from helpers import tiny_run
from fixtures_data import write_cifar10_dvs
from test_data_events import DVS_NUMBERS, EVENTS_PER_FILE, dvs_cfg

REPO = CONF_DIR.parent
RUN = tiny_run("trainer.epochs=2")
SMALL = "700k"  # room for one checkpoint of a tiny run (about 480 KiB), not for two
FULL = "no space left on the device"
READ_ONLY = "the file system is read-only"
# A run whose Hydra files stay out of the run folder, so that the test's small disk holds only the run's own.
HYDRA_ELSEWHERE = ["hydra.output_subdir=null", "hydra/job_logging=stdout"]


def mount(folder: Path, options: str) -> None:
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], check=True, capture_output=True)


def remount(folder: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(folder)], check=True, capture_output=True)


@pytest.fixture
def disk(tmp_path):
    """An empty tmpfs of SMALL bytes at tmp_path/disk; skips where the sandbox cannot mount one."""
    folder = tmp_path / "disk"
    folder.mkdir()
    try:
        mount(folder, f"size={SMALL}")
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here ({exc})")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith((".tmp", ".partial")))


@pytest.mark.slow  # two train.py runs (12 s); a too-full first checkpoint is checked in-process below
def test_a_full_disk_ends_train_py_with_one_line_and_resume_finishes(disk):
    """The quick start's case: the disk fills while last.pt is copied to best.pt."""
    run_dir = disk / "run"
    command = [sys.executable, "train.py", *RUN, *HYDRA_ELSEWHERE, f"hydra.run.dir={run_dir}"]
    out = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith(f"error: cannot write {run_dir / 'best.pt'}: {FULL}; free space or make the "
                                 "folder writable") and out.stderr.count("\n") == 1, out.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["status"], summary["epochs_completed"]) == ("interrupted", 1)
    assert summary["stop_reason"] == out.stderr[len("error: "):].strip()
    assert leftovers(run_dir) == [] and not (run_dir / "best.pt").exists() and not (run_dir / "run.lock").exists()
    assert load_checkpoint(run_dir / "last.pt")["epoch"] == 1  # verified by its checksum
    remount(disk, "size=4m")  # space freed
    out = subprocess.run([*command, "trainer.resume=auto"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["status"], summary["epochs_completed"]) == ("finished", 2)
    assert [json.loads(line)["epoch"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    assert leftovers(run_dir) == []


def test_a_disk_too_full_for_the_first_checkpoint(disk):
    """Nothing saved yet: summary.json says so, no temporary file, and the run starts again once there is room."""
    (disk / "filler").write_bytes(bytes(300 * 1024))
    run_dir = disk / "run"
    with pytest.raises(StorageError, match=f"^cannot write {run_dir / 'last.pt'}: {FULL}; "):
        train(compose(RUN), run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["status"], summary["epochs_completed"]) == ("interrupted", 0)
    assert leftovers(run_dir) == [] and not (run_dir / "last.pt").exists()
    (disk / "filler").unlink()
    remount(disk, "size=4m")
    assert train(compose([*RUN, "trainer.resume=auto"]), run_dir)["status"] == "finished"


@pytest.fixture
def read_only(disk):
    """The tmpfs holding a finished one-epoch run folder, remounted read-only; returns the run folder."""
    remount(disk, "size=4m")
    run_dir = disk / "run"
    train(compose(tiny_run()), run_dir)
    remount(disk, "ro")
    return run_dir


def test_a_read_only_run_folder(read_only, tmp_path):
    """Resume, eval.json, a search journal and report, a report's CSV: each refused write is one line naming its file,
    and the folder is unchanged."""
    before = {p: p.read_bytes() for p in read_only.rglob("*") if p.is_file()}
    with pytest.raises(StorageError, match=f"^cannot write {read_only / 'run.lock'}: {READ_ONLY}; "):
        train(compose([*RUN, "trainer.resume=auto"]), read_only)
    with pytest.raises(StorageError, match=f"^cannot write {read_only / 'eval' / 'eval.json'}: {READ_ONLY}; "):
        evaluate_checkpoint(compose([f"checkpoint={read_only}"], "eval"), read_only / "eval")
    with pytest.raises(StorageError, match=f"^cannot write {read_only / 'study' / 'optuna.journal'}: {READ_ONLY}"):
        make_storage(str(read_only / "study" / "optuna.journal"))
    study = optuna.create_study(direction="maximize")
    with pytest.raises(StorageError, match=f"^cannot write {read_only / 'optimization_results.yaml'}: {READ_ONLY}"):
        write_report(study, read_only, "val_acc_best", 1, plots=False)
    with pytest.raises(StorageError, match=f"^cannot write {read_only / 'rows.csv'}: {READ_ONLY}"):
        write_rows([{"a": 1}], read_only / "rows.csv")
    assert {p: p.read_bytes() for p in read_only.rglob("*") if p.is_file()} == before


def test_train_py_in_a_read_only_folder_prints_one_line(read_only):
    """Hydra creates the run folder before any arlif code runs: its refusal is one line too."""
    run_dir = read_only / "new"
    out = subprocess.run([sys.executable, "train.py", *RUN, f"hydra.run.dir={run_dir}"], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith(f"error: cannot write {run_dir}") and READ_ONLY in out.stderr, out.stderr
    assert out.stderr.count("\n") == 1, out.stderr


def test_a_frame_cache_on_a_full_or_read_only_disk(disk, tmp_path):
    root = tmp_path / "dvs"
    write_cifar10_dvs(root, DVS_NUMBERS, EVENTS_PER_FILE)
    cache = disk / "cache"
    (disk / "filler").write_bytes(bytes(int(SMALL[:-1]) * 1024 - 8192))  # two pages left: the key.json of each split
    bundle = build_data(dvs_cfg(root, cache_dir=str(cache)))
    with pytest.raises(StorageError, match=f"^cannot write {bundle.test.folder / '0.npz'}: {FULL}; free space or make "
                                           "the folder writable, or move the frame cache elsewhere"):
        bundle.test[0]
    assert leftovers(cache) == []
    (disk / "filler").unlink()
    x, _ = bundle.test[0]
    remount(disk, "ro")
    assert torch.equal(bundle.test[0][0], x)  # cached frames still read
    with pytest.raises(StorageError, match=f"^cannot write {bundle.test.folder / '1.npz'}: {READ_ONLY}"):
        bundle.test[1]
    shutil.rmtree(tmp_path / "dvs")
