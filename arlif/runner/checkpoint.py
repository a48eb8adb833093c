"""Checkpoint files: written atomically with a checksum, verified and read with a clear error when unusable.

A checkpoint is a dict with at least `model`, `optimizer`, `scheduler`, `scaler`,
`epoch` (epochs completed), `best` ({"acc", "epoch"}), `rng` (one arlif.runner.runtime.rng_state
per training process, by rank), `partial_epoch` (None, or the epoch a stop interrupted and
each process's progress through it) and `config` (the resolved run config as plain
containers).  Everything in it is a tensor or a plain value, so it loads with
`torch.load(weights_only=True)`.

Every checkpoint carries a checksum of all its bytes (arlif.runner.checksum), written with it, and
every read verifies it: resume (a search trial's too), eval.py, and the figures and tables that
evaluate checkpoints, all through `load_checkpoint`.  A damaged file is a CheckpointError naming the
file, the checksum that was expected and what to do instead; the file is left as it is.  A checkpoint
written before checksums loads unverified, with a warning (once per file).

A checkpoint is untrusted input (docs/scaling.md, "What loading a checkpoint can do"): it is read without
unpickling objects, and every name its config uses to choose code (NAMED) must be one of arlif's own
registered options, else the load is a CheckpointError naming the key and value; nothing is imported.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from arlif.data import builder_name
from arlif.errors import CheckpointError, ConfigError
from arlif.loss import LOSSES
from arlif.models import MODELS
from arlif.neurons import NEURONS
from arlif.runner import checksum
from arlif.runner.records import BEST, LAST, write_atomically

log = logging.getLogger(__name__)

# What a damaged checkpoint's reader can do instead, by purpose: use the run folder's other checkpoint
# (its command-line key), or this.
INSTEAD = {"resume": ("resume from", "trainer.resume", "start fresh in a new run folder"),
           "evaluate": ("evaluate", "checkpoint", "pick another checkpoint"),
           "initialise": ("start from", "trainer.init_weights", "pick another checkpoint")}
_unsealed_warned: set[Path] = set()
# The config keys whose values choose code by name, and the names each may take.
NAMED = {"model.name": MODELS, "neuron.name": NEURONS, "loss.name": LOSSES}


class _Sink:
    """The file torch.save writes into, keeping the OSError of a refused write that torch reports as a RuntimeError."""

    def __init__(self, file):
        self.file, self.error = file, None

    def write(self, data) -> int:
        try:
            return self.file.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self.file.flush()


def _save_sealed(state: dict, tmp: Path) -> None:
    computes = torch.serialization.get_crc32_options()
    torch.serialization.set_crc32_options(True)  # the records' CRC-32s are part of the checksum
    try:
        with open(tmp, "wb") as f:
            sink = _Sink(f)
            try:
                torch.save(state, sink)
            except RuntimeError as exc:
                if sink.error is None:
                    raise
                raise sink.error from exc  # the disk's own errno (full, over quota) for write_atomically
    finally:
        torch.serialization.set_crc32_options(computes)
    checksum.seal(tmp)


def save_checkpoint(state: dict, path: Path) -> None:
    """Write `state` with its checksum to `path` atomically (write_atomically)."""
    write_atomically(path, lambda tmp: _save_sealed(state, tmp))


def copy_checkpoint(src: Path, dst: Path) -> None:
    """Atomically copy a checkpoint file (e.g. last.pt -> best.pt) without re-serialising it."""
    write_atomically(dst, lambda tmp: shutil.copyfile(src, tmp))


def _instead(path: Path, purpose: str) -> str:
    """What to do when the checkpoint at `path` is damaged: use its run folder's other checkpoint, if there is
    one, or start fresh (resume) or pick another (evaluate)."""
    verb, key, otherwise = INSTEAD[purpose]
    other = path.with_name(BEST if path.name == LAST else LAST)
    if path.name in (LAST, BEST) and other.is_file():
        return f"{verb} the run folder's other checkpoint ({key}={other}) or {otherwise}"
    return otherwise


def load_checkpoint(path: Path, purpose: str = "resume") -> dict:
    """Read a checkpoint onto the CPU after verifying its checksum; any damaged, unreadable or foreign file is a
    CheckpointError whose advice fits `purpose` (resume | evaluate | initialise)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        sealed = checksum.verify(path)
    except checksum.Damaged as exc:
        raise CheckpointError(f"checkpoint {path} is damaged: {exc}; the file was left as it is: "
                              f"{_instead(path, purpose)}") from exc
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        raise CheckpointError(f"checkpoint {path} cannot be read ({type(exc).__name__}); it is truncated, "
                              "corrupt or not an arlif checkpoint: pick another file") from exc
    if not sealed:
        if not checksum.ends_as_archive(path):  # a torch.save archive with something after it
            raise CheckpointError(f"checkpoint {path} is damaged: it ends with neither its checksum nor a zip archive's "
                                  f"end record (its checksum trailer was changed); the file was left as it is: "
                                  f"{_instead(path, purpose)}")
        if path.resolve() not in _unsealed_warned:
            _unsealed_warned.add(path.resolve())
            log.warning("checkpoint %s has no checksum (it was written before arlif checked them): it is read "
                        "unverified; a run resumed from it saves its next checkpoints with one", path)
    missing = [k for k in ("model", "epoch", "config") if not isinstance(state, dict) or k not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {missing}; it is not an arlif checkpoint")
    _check_names(state["config"], path)
    return state


def _check_names(config, path: Path) -> None:
    """Every name in a checkpoint's config that chooses code is one of arlif's registered options."""
    if not isinstance(config, dict):
        raise CheckpointError(f"checkpoint {path}: its config is a {type(config).__name__}, not a mapping; "
                              "it is not an arlif checkpoint")
    stored = OmegaConf.create(config)
    try:
        builder_name(OmegaConf.select(stored, "dataset.builder"))
    except ConfigError as exc:
        raise CheckpointError(f"checkpoint {path}: its config's {exc}; the checkpoint was not used") from None
    for key, names in NAMED.items():
        value = OmegaConf.select(stored, key)
        if not isinstance(value, str) or value not in names:
            raise CheckpointError(f"checkpoint {path}: its config's {key}={value!r} is not one of arlif's "
                                  f"{sorted(names)}; the checkpoint was not used")


# The config keys that decide a network's parameter names and shapes (arlif.runner.build.build_model).
SHOWN = 3  # differing parameters named in the message
SHAPE_KEYS = ("model.name", "neuron.name", "dataset.num_classes", "dataset.in_channels", "dataset.image_size")


def check_model_fits(model: torch.nn.Module, state: dict, path: Path, config: DictConfig) -> None:
    """Raise one CheckpointError line unless the checkpoint's weights load into `model` (built from `config`)
    as they are.

    The message names the first SHOWN parameters whose shapes differ (or that only one side has)
    and the checkpoint's own values of the SHAPE_KEYS that differ from `config`, which are what to
    pass to build the network the checkpoint holds.  For resume and eval alike.
    """
    theirs, ours = state["model"], model.state_dict()
    problems = [f"{k}: checkpoint {list(theirs[k].shape)} vs model {list(v.shape)}"
                for k, v in ours.items() if k in theirs and tuple(theirs[k].shape) != tuple(v.shape)]
    problems += [f"{k}: not in the checkpoint" for k in ours if k not in theirs]
    problems += [f"{k}: not in the model" for k in theirs if k not in ours]
    if not problems:
        return
    more = f" and {len(problems) - SHOWN} more" if len(problems) > SHOWN else ""
    stored = OmegaConf.create(state["config"])
    keys = [f"{k}={OmegaConf.select(stored, k)}" for k in SHAPE_KEYS
            if OmegaConf.select(stored, k) != OmegaConf.select(config, k)]
    fix = (f"pass the checkpoint's {' '.join(keys)}" if keys else
           "its config builds this same network, so it was written by another version of arlif's models")
    raise CheckpointError(f"checkpoint {path} does not fit {config.model.name} with {config.neuron.name} neurons: "
                          f"{'; '.join(problems[:SHOWN])}{more}; {fix}")
