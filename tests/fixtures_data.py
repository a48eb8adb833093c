"""Tiny copies of the real datasets, written in their real on-disk formats, for offline tests.

- CIFAR-10/100: the python pickle batches torchvision reads (`cifar-10-batches-py`,
  `cifar-100-python`).  torchvision md5-checks every file against the real dataset's
  sums, which no fixture can match, so `cifar_checksums` gives the class attributes
  that make torchvision check the fixture's own md5s instead (the check still runs).
- Tiny-ImageNet: a `tiny-imagenet-200` tree of real JPEGs with wnids.txt and val_annotations.txt.
- CIFAR10-DVS: `.aedat4` files written by dv-processing (iniVation's own library),
  read back by tonic through the `aedat` package, in tonic's `CIFAR10DVS/<class>/` layout.
- DVS128 Gesture: AEDAT 3.1 recordings as in IBM's DvsGesture.tar.gz, written here from
  the format spec (packet headers, polarity events, a special-event packet, timestamp
  overflow, an invalid event), with `*_labels.csv` and trials_to_{train,test}.txt;
  and tonic's preprocessed `DVSGesture/ibmGesture{Train,Test}/user*/<label>.npy` copy.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

CIFAR10_DVS_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _pickle(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj))


def write_cifar(data_dir: Path, name: str, per_file: int, seed: int = 0) -> None:
    """`cifar10`: 5 train batches + test_batch of `per_file` images; `cifar100`: train/test files."""
    rng = np.random.default_rng(seed)
    num_classes = 10 if name == "cifar10" else 100

    def batch(n: int, label_key: str, first: int) -> dict:
        labels = [(first + i) % num_classes for i in range(n)]
        return {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), label_key: labels,
                "filenames": [f"img_{first + i}.png" for i in range(n)]}

    if name == "cifar10":
        folder = data_dir / "cifar-10-batches-py"
        for i in range(1, 6):
            _pickle(folder / f"data_batch_{i}", batch(per_file, "labels", i * per_file))
        _pickle(folder / "test_batch", batch(per_file, "labels", 0))
        _pickle(folder / "batches.meta", {"label_names": [f"class{i}" for i in range(10)]})
    else:
        folder = data_dir / "cifar-100-python"
        _pickle(folder / "train", {**batch(per_file, "fine_labels", 0), "coarse_labels": [0] * per_file})
        _pickle(folder / "test", {**batch(per_file, "fine_labels", 1), "coarse_labels": [0] * per_file})
        _pickle(folder / "meta", {"fine_label_names": [f"class{i}" for i in range(100)],
                                  "coarse_label_names": [f"super{i}" for i in range(20)]})


def cifar_checksums(cls, data_dir: Path) -> dict:
    """{attribute: value} for the torchvision CIFAR class so that it accepts the fixture's md5s."""
    folder = data_dir / cls.base_folder
    return {"train_list": [[n, _md5(folder / n)] for n, _ in cls.train_list],
            "test_list": [[n, _md5(folder / n)] for n, _ in cls.test_list],
            "meta": {**cls.meta, "md5": _md5(folder / cls.meta["filename"])}}


def accept_cifar_fixtures(data_dir: Path) -> None:
    """Make torchvision check the md5s of the CIFAR fixtures under `data_dir` (for a train.py process)."""
    from torchvision import datasets

    for cls in (datasets.CIFAR10, datasets.CIFAR100):
        if (data_dir / cls.base_folder).is_dir():
            for attr, value in cifar_checksums(cls, data_dir).items():
                setattr(cls, attr, value)


def write_tiny_imagenet(data_dir: Path, wnids: list, train_per_class: int, val_per_class: int) -> Path:
    """A `tiny-imagenet-200` tree of 64x64 RGB JPEGs; val images cycle through the classes."""
    rng = np.random.default_rng(0)
    root = data_dir / "tiny-imagenet-200"

    def jpeg(path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path, "JPEG")

    root.mkdir(parents=True)
    (root / "wnids.txt").write_text("".join(f"{w}\n" for w in wnids))
    (root / "words.txt").write_text("".join(f"{w}\tthing {w}\n" for w in wnids))
    for wnid in wnids:
        for i in range(train_per_class):
            jpeg(root / "train" / wnid / "images" / f"{wnid}_{i}.JPEG")
        (root / "train" / wnid / f"{wnid}_boxes.txt").write_text(
            "".join(f"{wnid}_{i}.JPEG\t0\t0\t63\t63\n" for i in range(train_per_class)))
    lines = []
    for i in range(val_per_class * len(wnids)):
        jpeg(root / "val" / "images" / f"val_{i}.JPEG")
        lines.append(f"val_{i}.JPEG\t{wnids[i % len(wnids)]}\t0\t0\t63\t63\n")
    (root / "val" / "val_annotations.txt").write_text("".join(lines))
    jpeg(root / "test" / "images" / "test_0.JPEG")
    return root


def random_events(n: int, seed: int, low: int = 0, high: int = 128, t0: int = 0) -> dict:
    """n events with increasing timestamps (µs) and x, y in [low, high)."""
    rng = np.random.default_rng(seed)
    return {"t": t0 + np.cumsum(rng.integers(1, 50, n)), "x": rng.integers(low, high, n),
            "y": rng.integers(low, high, n), "p": rng.integers(0, 2, n)}


def write_aedat4(path: Path, events: dict) -> None:
    """Write events as a DVS128 (128x128) event stream with dv-processing."""
    import dv_processing as dv

    store = dv.EventStore()
    for t, x, y, p in zip(events["t"], events["x"], events["y"], events["p"]):
        store.push_back(int(t), int(x), int(y), bool(p))
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = dv.io.MonoCameraWriter(str(path), dv.io.MonoCameraWriter.EventOnlyConfig("DVS128", (128, 128)))
    writer.writeEvents(store)
    del writer  # closes the file


def write_cifar10_dvs(data_dir: Path, numbers: list, events_per_file: int) -> None:
    """`CIFAR10DVS/<class>/cifar10_<class>_<i>.aedat4` for each i in `numbers`; events away from the border."""
    for c, name in enumerate(CIFAR10_DVS_CLASSES):
        for i in numbers:
            write_aedat4(data_dir / "CIFAR10DVS" / name / f"cifar10_{name}_{i}.aedat4",
                         random_events(events_per_file, seed=100 * c + i, low=16, high=112))


def _aedat31_packet(event_type: int, data: np.ndarray, ts: np.ndarray, ts_overflow: int) -> bytes:
    """One AEDAT 3.1 packet: 28-byte header + 8-byte events (uint32 data, int32 timestamp)."""
    header = struct.pack("<hhiiiiii", event_type, 1, 8, 4, ts_overflow, len(data), len(data), len(data))
    body = np.empty(len(data), dtype=[("data", "<u4"), ("ts", "<i4")])
    body["data"], body["ts"] = data, ts
    return header + body.tobytes()


def write_aedat31(path: Path, events: dict, packet_size: int = 64) -> None:
    """An IBM-style AEDAT 3.1 recording of the given polarity events.

    It starts with a special-event packet (type 0, e.g. a timestamp reset) that readers
    must skip, splits timestamps at 2^31 into (ts_overflow, 31-bit ts), marks events
    with `events["valid"] == 0` invalid, and packs `packet_size` events per packet.
    """
    valid = events.get("valid", np.ones(len(events["t"]), dtype=np.int64))
    data = ((events["x"].astype(np.uint32) << 17) | (events["y"].astype(np.uint32) << 2)
            | (events["p"].astype(np.uint32) << 1) | valid.astype(np.uint32))
    t = events["t"].astype(np.int64)
    header = (b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DVS128\r\n"
              b"#Start-Time: 2017-01-01 00:00:00\r\n#!END-HEADER\r\n")
    packets = [_aedat31_packet(0, np.array([1 << 1], np.uint32), np.array([0], np.int64), 0)]
    for start in range(0, len(t), packet_size):
        chunk = slice(start, start + packet_size)
        overflow = int(t[chunk][0] >> 31)
        assert (t[chunk] >> 31 == overflow).all(), "a packet must not straddle a timestamp overflow"
        packets.append(_aedat31_packet(1, data[chunk], t[chunk] & 0x7FFFFFFF, overflow))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + b"".join(packets))


def write_ibm_gesture(data_dir: Path, train: dict, test: dict, t0: int = 0) -> dict:
    """`DvsGesture/` with recordings {name: [(class 1-11, n events), ...]} and their labels csv.

    Each gesture gets its own time window holding exactly n valid events; between
    windows there are 7 events that belong to no gesture, and each window also holds one
    invalid event.  Returns {recording name: [events of each gesture, in csv order]}.
    """
    root = data_dir / "DvsGesture"
    written = {}
    for list_name, recordings in (("trials_to_train.txt", train), ("trials_to_test.txt", test)):
        for rec, gestures in recordings.items():
            columns, rows, gesture_events, t = [], [], [], t0
            for k, (cls, n) in enumerate(gestures):
                gap = random_events(7, seed=k, t0=t)
                ev = random_events(n, seed=1000 + k, t0=int(gap["t"][-1]) + 10)
                ev["valid"] = np.ones(n, dtype=np.int64)
                bad = {key: value[:1].copy() for key, value in ev.items()}
                bad["valid"][:] = 0
                start, end = int(ev["t"][0]), int(ev["t"][-1]) + 1
                rows.append(f"{cls},{start},{end}\n")
                columns += [{**gap, "valid": np.ones(7, dtype=np.int64)}, bad, ev]
                gesture_events.append(ev)
                t = end + 100
            merged = {key: np.concatenate([c[key] for c in columns]) for key in columns[0]}
            order = np.argsort(merged["t"], kind="stable")
            write_aedat31(root / f"{rec}.aedat", {key: value[order] for key, value in merged.items()})
            (root / f"{rec}_labels.csv").write_text("class,startTime_usec,endTime_usec\n" + "".join(rows))
            written[rec] = gesture_events
        (root / list_name).write_text("".join(f"{rec}.aedat\n" for rec in recordings))
    return written


def write_tonic_gesture(data_dir: Path, train: dict, test: dict) -> None:
    """tonic's `DVSGesture/ibmGesture{Train,Test}/<user_lighting>/<label>.npy` (x, y, p, t in ms)."""
    for folder, users in (("ibmGestureTrain", train), ("ibmGestureTest", test)):
        for user, labels in users.items():
            for label in labels:
                ev = random_events(300, seed=label)
                array = np.stack([ev["x"], ev["y"], ev["p"], ev["t"] // 1000], axis=1).astype(np.int64)
                path = data_dir / "DVSGesture" / folder / user / f"{label}.npy"
                path.parent.mkdir(parents=True, exist_ok=True)
                np.save(path, array)


def run_config(name: str, data_dir: Path, T: int = 4, **dataset_overrides):
    """A run config as train.py composes it: conf/dataset/<name>.yaml plus T, seed and data_dir."""
    from omegaconf import OmegaConf

    repo = Path(__file__).resolve().parents[1]
    cfg = OmegaConf.create({"T": T, "seed": 0, "data_dir": str(data_dir),
                            "dataset": OmegaConf.load(repo / "conf" / "dataset" / f"{name}.yaml")})
    for key, value in dataset_overrides.items():
        OmegaConf.update(cfg, f"dataset.{key}", value, merge=False)
    return cfg


REPO = Path(__file__).resolve().parents[1]
QUICK_RUN = ["model=quickcnn", "T=2", "batch_size=2", "trainer.epochs=1", "trainer.limit_train_batches=2",
             "trainer.limit_test_batches=1", "trainer.num_workers=0", "logger=none"]


def run_train(data_dir: Path, run_dir: Path, overrides: list, cifar_fixture: bool = False):
    """`python train.py data_dir=... <QUICK_RUN> <overrides>`: a two-batch run of the small model.

    With `cifar_fixture`, train.py runs (via runpy, as __main__) in a process where
    torchvision checks the CIFAR fixture's md5s instead of the real dataset's.
    """
    argv = ["train.py", f"data_dir={data_dir}", f"hydra.run.dir={run_dir}", *QUICK_RUN, *overrides]
    prelude = (f"sys.path.insert(0, {str(REPO / 'tests')!r}); import fixtures_data; "
               f"fixtures_data.accept_cifar_fixtures(fixtures_data.Path({str(data_dir)!r}))" if cifar_fixture else "")
    code = f"import runpy, sys; {prelude}\nsys.argv = {argv!r}\nrunpy.run_path('train.py', run_name='__main__')"
    env = {**os.environ, "WANDB_MODE": "disabled"}
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
