"""Run records: the run directory's JSON files and the optional Weights & Biases run.

`RunRecorder` is the one place a run writes what it measured.  Only the main process
records (see arlif.runner.runtime.is_main_process); on other ranks every method is a no-op.
W&B is best effort: any failure there warns once and training goes on without it.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from omegaconf import OmegaConf

from arlif.runner.records import CONFIG, METRICS, SUMMARY, write_atomically, write_json, writing
from arlif.runner.runtime import is_main_process

log = logging.getLogger(__name__)

WANDB_MODES = ("auto", "online", "offline", "disabled")
LOGGERS = ("wandb", "none")


def flatten(metrics: dict, sep: str = "/") -> dict:
    """{"alpha": {"layer1": 1.0}} -> {"alpha/layer1": 1.0}, as W&B charts expect."""
    flat = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            flat.update({f"{key}{sep}{k}": v for k, v in flatten(value, sep).items()})
        else:
            flat[key] = value
    return flat


def resolve_wandb_mode(mode: str) -> str:
    """`auto` becomes WANDB_MODE when set, else online with an API key and offline without."""
    if mode != "auto":
        return mode
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    import wandb

    try:  # an API key from the environment or `wandb login`, checked without prompting
        return "online" if wandb.login(prompt=False, verify=False) else "offline"
    except Exception:
        return "offline"


class WandbRun:
    """A W&B run that never stops training: on any error it warns once and goes quiet."""

    def __init__(self, cfg, run_dir: Path, run_id: Optional[str] = None):
        self.run = None
        c = cfg.logger
        if c.mode == "disabled":
            return
        try:
            import wandb
        except ImportError as exc:
            self._give_up("import", exc)
            return
        mode = resolve_wandb_mode(c.mode)
        kwargs = dict(project=c.project, entity=c.entity, group=c.group, name=c.run_name, tags=list(c.tags),
                      config=OmegaConf.to_container(cfg, resolve=True), dir=str(run_dir), id=run_id,
                      resume="allow" if run_id else None)
        try:
            self.run = wandb.init(mode=mode, settings=wandb.Settings(init_timeout=c.init_timeout_s), **kwargs)
        except Exception as exc:  # network, login or server trouble: W&B must not stop training
            if mode == "offline":
                self._give_up("start", exc)
                return
            log.warning("W&B could not start online (%s); logging offline instead "
                        "(upload later with `wandb sync %s`)", exc, run_dir / "wandb")
            try:
                self.run = wandb.init(mode="offline", **kwargs)
            except Exception as exc2:
                self._give_up("start offline", exc2)

    def _give_up(self, what: str, exc: Exception) -> None:
        log.warning("W&B failed to %s (%s: %s); continuing without W&B", what, type(exc).__name__, exc)
        self.run = None

    def _safely(self, what: str, call) -> None:
        """Run `call()` unless W&B is already off; any error turns W&B off with one warning."""
        if self.run is None:
            return
        try:
            call()
        except Exception as exc:
            self._give_up(what, exc)

    @property
    def id(self) -> Optional[str]:
        return self.run.id if self.run is not None else None

    def log(self, metrics: dict, step: int) -> None:
        self._safely("log", lambda: self.run.log(flatten(metrics), step=step))

    def summarise(self, summary: dict) -> None:
        self._safely("write the summary", lambda: self.run.summary.update(flatten(summary)))

    def finish(self) -> None:
        self._safely("finish", lambda: self.run.finish())


class RunRecorder:
    """Writes config.yaml, metrics.jsonl and summary.json into the run directory, and mirrors to W&B."""

    def __init__(self, cfg, run_dir: Path, wandb_id: Optional[str] = None):
        self.run_dir = Path(run_dir)
        self.active = is_main_process()
        self.wandb = None
        if not self.active:
            return
        with writing(self.run_dir / CONFIG):
            self.run_dir.mkdir(parents=True, exist_ok=True)
            OmegaConf.save(cfg, self.run_dir / CONFIG, resolve=True)
        if cfg.logger.name == "wandb":
            self.wandb = WandbRun(cfg, self.run_dir, wandb_id)

    @property
    def wandb_id(self) -> Optional[str]:
        return self.wandb.id if self.wandb is not None else None

    def truncate_metrics(self, epochs_done: int) -> None:
        """Drop metrics.jsonl lines past `epochs_done`, left by a run killed before its checkpoint."""
        path = self.run_dir / METRICS
        if not self.active or not path.exists():
            return
        kept = []
        for line in path.read_text().splitlines():
            try:
                if json.loads(line)["epoch"] <= epochs_done:
                    kept.append(line)
            except (ValueError, KeyError, TypeError):  # a line cut short by the kill
                continue
        write_atomically(path, lambda tmp: tmp.write_text("".join(line + "\n" for line in kept)))

    def log_epoch(self, metrics: dict) -> None:
        """Append one epoch's metrics (must hold `epoch`) to metrics.jsonl and W&B."""
        if not self.active:
            return
        with writing(self.run_dir / METRICS), open(self.run_dir / METRICS, "a") as f:  # a resume drops a cut line
            f.write(json.dumps(metrics) + "\n")
        if self.wandb is not None:
            self.wandb.log(metrics, step=metrics["epoch"])

    def write_summary(self, summary: dict) -> None:
        """Write summary.json (atomically), stamped with `updated_at`, the UTC time of this write."""
        if not self.active:
            return
        summary = {**summary, "updated_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        write_json(self.run_dir / SUMMARY, summary)
        if self.wandb is not None:
            self.wandb.summarise(summary)

    def close(self) -> None:
        if self.wandb is not None:
            self.wandb.finish()
