"""Event-camera datasets (CIFAR10-DVS, DVS128 Gesture) as float32 frames `[T, 2, H, W]`.

Per sample: read the events (tonic's readers, or `read_aedat31` for the original IBM
recordings) -> tonic `ToFrame(n_event_bins=T)`: T frames holding an equal number of
events, floor(N / T) each, counted per polarity and pixel; tonic drops the N mod T
leftover events at the end of the sample -> optional bilinear resize (antialiased unless dataset.antialias=false) ->
on-disk cache (`FrameCache`: one compressed .npz per sample, in a folder keyed by
everything that changes the frames) -> float32 tensor -> training augmentation.  The
augmentation runs after the cache, so every epoch draws fresh augmentations from the
same cached frames.  (tonic's DiskCachedDataset is not used: it logs one INFO line per
sample it caches and draws from numpy's global RNG on every read.)
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np
import torch
from numpy.lib import recfunctions
from torch.utils.data import Dataset
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as F

from arlif.data import DataBundle
from arlif.data.augment import frame_augmentation
from arlif.data.layout import check_split_sizes, data_root, natural_key, not_found
from arlif.errors import ConfigError, DataError, StorageError, storage_error

SENSOR_SIZE = (128, 128, 2)  # tonic order (W, H, polarities); both datasets use a 128x128 DVS
CACHE_FORMAT = 2  # bump when the frame pipeline changes in a way the key below does not capture

CIFAR10_DVS_LAYOUT = "<data_dir>/CIFAR10DVS/<class>/*.aedat4 (classes airplane ... truck, 1000 files each)"
IBM_GESTURE_LAYOUT = ("<data_dir>/DvsGesture/{trials_to_train.txt, trials_to_test.txt, "
                      "user<NN>_<lighting>.aedat, user<NN>_<lighting>_labels.csv}")
IBM_GESTURE_HOW = ("download DvsGesture.tar.gz from IBM "
                   "(https://ibm.ent.box.com/s/3hiq58ww1pbbjrinh367ykfdf60xsfm8/folder/50167556794, "
                   "see https://research.ibm.com/interactive/dvsgesture/) and run "
                   "`python scripts/download_dvs.py dvs_gesture --archive DvsGesture.tar.gz --data-dir <data_dir>`")
TONIC_GESTURE_LAYOUT = "<data_dir>/DVSGesture/{ibmGestureTrain,ibmGestureTest}/user<NN>_<lighting>/<label>.npy"


@dataclass(frozen=True)
class EventSample:
    """One labelled sample: a file, and for long recordings the [start, end) µs window inside it."""

    path: Path
    label: int
    window: Optional[tuple[int, int]] = None

    def key(self, root: Path) -> str:
        name = self.path.relative_to(root).as_posix()
        return f"{name}:{self.label}" + (f"@{self.window[0]}-{self.window[1]}" if self.window else "")


# ---------------------------------------------------------------------------- readers
def read_aedat4_events(sample: EventSample) -> np.ndarray:
    """Events of one CIFAR10-DVS `.aedat4` file (tonic's reader; needs the `aedat` package)."""
    import tonic.io

    events = tonic.io.read_aedat4(str(sample.path))
    events.dtype.names = ("t", "x", "y", "p")
    return events


def read_tonic_gesture_events(sample: EventSample) -> np.ndarray:
    """Events of one tonic DVSGesture `.npy` sample (columns x, y, p, t in ms; returned in µs like tonic)."""
    import tonic.datasets

    raw = np.load(sample.path)
    raw[:, 3] *= 1000
    return recfunctions.unstructured_to_structured(raw, tonic.datasets.DVSGesture.dtype)


def read_ibm_gesture_events(sample: EventSample) -> np.ndarray:
    """The events of one gesture: its [start, end) window of an IBM recording."""
    events = read_aedat31(sample.path)
    start, end = sample.window
    return events[(events["t"] >= start) & (events["t"] < end)]


_PACKET_HEADER = np.dtype([("type", "<i2"), ("source", "<i2"), ("size", "<i4"), ("ts_offset", "<i4"),
                           ("ts_overflow", "<i4"), ("capacity", "<i4"), ("number", "<i4"), ("valid", "<i4")])
_POLARITY = 1  # AEDAT 3.1 event type of DVS polarity events


@functools.lru_cache(maxsize=1)  # the ~12 gestures of one recording are usually read one after another
def read_aedat31(path: Path) -> np.ndarray:
    """Valid polarity events (x, y, t in µs, p) of an AEDAT 3.1 file, the format of DvsGesture.tar.gz.

    Format: ASCII header lines starting with '#' up to '#!END-HEADER', then packets of a
    28-byte little-endian header (type, source, event size, ts offset, ts overflow,
    capacity, number, valid) and `capacity` events of `size` bytes.  A polarity event is
    uint32 data (bit 0 valid, bit 1 polarity, bits 2-16 y, bits 17-31 x) and an int32
    timestamp whose overflow count is in the packet header.  Other packet types are skipped.
    (tonic 1.7's read_dvs_ibm fails on these files and decodes every packet as polarity.)
    """
    import tonic.io

    def corrupt(why: str) -> DataError:
        return DataError(f"{path} is corrupt ({why}); replace it with a fresh copy from DvsGesture.tar.gz")

    with open(path, "rb") as f:
        if not f.readline().startswith(b"#!AER-DAT3"):
            raise corrupt("not an AEDAT 3.x file: it must start with '#!AER-DAT3.1'")
        line = f.readline()
        while line and not line.startswith(b"#!END-HEADER"):
            line = f.readline()
        if not line:
            raise corrupt("no '#!END-HEADER' line")
        body = f.read()
    parts, offset = [], 0
    while offset < len(body):
        if offset + _PACKET_HEADER.itemsize > len(body):
            raise corrupt(f"truncated packet header at byte {offset} of the data")
        head = np.frombuffer(body, _PACKET_HEADER, count=1, offset=offset)[0]
        start = offset + _PACKET_HEADER.itemsize
        offset = start + int(head["capacity"]) * int(head["size"])
        if head["size"] <= 0 or head["number"] > head["capacity"] or offset > len(body):
            raise corrupt(f"bad or truncated packet at byte {start - _PACKET_HEADER.itemsize} of the data")
        if head["type"] != _POLARITY:
            continue
        event = np.dtype({"names": ["data", "ts"], "formats": ["<u4", "<i4"], "offsets": [0, 4],
                          "itemsize": int(head["size"])})
        packet = np.frombuffer(body, event, count=int(head["number"]), offset=start)
        packet = packet[(packet["data"] & 1) == 1]
        parts.append((packet["data"], packet["ts"].astype(np.int64) | (int(head["ts_overflow"]) << 31)))
    data = np.concatenate([d for d, _ in parts]) if parts else np.zeros(0, np.uint32)
    t = np.concatenate([t for _, t in parts]) if parts else np.zeros(0, np.int64)
    return tonic.io.make_structured_array((data >> 17) & 0x7FFF, (data >> 2) & 0x7FFF, t, (data >> 1) & 1)


# ---------------------------------------------------------------------------- frames and cache
class EventFrames(Dataset):
    """Samples -> (frames, label): T equal-event-count frames at `image_size`² (int16 counts, float32 if resized;
    the bilinear resize antialiases unless `antialias` is false, as torchvision's tensor Resize before 0.17)."""

    def __init__(self, samples: list, read: Callable, time_steps: int, image_size: int, antialias: bool = True) -> None:
        import tonic.transforms

        self.samples, self.read, self.time_steps, self.image_size = samples, read, time_steps, image_size
        self.antialias = antialias
        self.to_frame = tonic.transforms.ToFrame(sensor_size=SENSOR_SIZE, n_event_bins=time_steps)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        sample = self.samples[index]
        try:
            frames = self.to_frame(self.read(sample))
        except DataError:
            raise
        except Exception as exc:  # any reader failure means the file cannot be used as it is
            raise DataError(f"cannot turn {sample.path} into frames ({type(exc).__name__}: {exc}): the file "
                            f"looks corrupt; replace it with a fresh copy of the dataset") from exc
        if self.image_size != SENSOR_SIZE[1]:
            frames = F.resize(torch.from_numpy(frames).float(), [self.image_size, self.image_size],
                              interpolation=InterpolationMode.BILINEAR, antialias=self.antialias).numpy()
        return frames, sample.label


class FrameCache(Dataset):
    """`frames` stored on first use as `<folder>/<index>.npz`, later read from there.

    Reads return (float32 tensor `[T, C, H, W]`, label), with `augment` applied on every
    read (after the cache).  A cached file is the SHA-256 of the rest, then a compressed .npz
    of the frames; it is parsed only when the digest matches, so any damaged, truncated or foreign
    file is rebuilt, never read.  Files are written to a temporary name and renamed, so parallel
    workers or runs never see half-written frames; a write that the disk refuses (full, read-only)
    is a StorageError naming the file, with the temporary file removed.
    """

    def __init__(self, frames: EventFrames, folder: Path, augment: Optional[Callable] = None) -> None:
        self.frames, self.folder, self.augment = frames, folder, augment

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int):
        path = self.folder / f"{index}.npz"
        frames = read_cached(path)
        if frames is None:  # not cached yet, or damaged
            frames, _ = self.frames[index]
            write_cached(path, frames)
        x = torch.from_numpy(frames).float()
        return (self.augment(x) if self.augment is not None else x), self.frames.samples[index].label


DIGEST_SIZE = hashlib.sha256().digest_size


def read_cached(path: Path) -> Optional[np.ndarray]:
    """The frames cached at `path`; None when there is no file, or its digest does not match its content."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    payload = data[DIGEST_SIZE:]
    if len(data) <= DIGEST_SIZE or hashlib.sha256(payload).digest() != data[:DIGEST_SIZE]:
        return None
    with np.load(io.BytesIO(payload)) as stored:  # the bytes written by write_cached, unchanged
        return stored["frames"]


def write_cached(path: Path, frames: np.ndarray) -> None:
    """Cache `frames` at `path` (digest, then .npz) through a temporary file of this process."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, frames=frames)
    payload = buffer.getvalue()
    partial = path.with_name(f"{path.stem}.{os.getpid()}.partial")
    try:
        with writing_cache(path):
            partial.write_bytes(hashlib.sha256(payload).digest() + payload)
            os.replace(partial, path)
    except StorageError:
        with contextlib.suppress(OSError):  # on a read-only disk there is none, and unlink says read-only
            partial.unlink()
        raise


@contextlib.contextmanager
def writing_cache(path: Path) -> Iterator[None]:
    """A write of the frame cache that the disk refuses becomes one StorageError naming `path` and what to do."""
    try:
        yield
    except OSError as exc:
        err = storage_error(exc, path, "free space or make the folder writable, or move the frame cache "
                                       "elsewhere with dataset.cache_dir=PATH")
        if err is None:
            raise
        raise err from exc


def frame_cache_dir(cache_root: Path, name: str, split: str, frames: EventFrames, root: Path) -> Path:
    """A cache folder unique to everything that changes the frames (T, binning, size, sample list)."""
    key = {"format": CACHE_FORMAT, "dataset": name, "split": split, "T": frames.time_steps,
           "binning": "tonic ToFrame n_event_bins", "sensor_size": SENSOR_SIZE, "image_size": frames.image_size,
           "resize": ("bilinear antialias" if frames.antialias else "bilinear") if frames.image_size != SENSOR_SIZE[1]
           else "none",
           "samples": hashlib.sha1("\n".join(s.key(root) for s in frames.samples).encode()).hexdigest()}
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    folder = cache_root / name / f"{split}-T{frames.time_steps}-{frames.image_size}px-{digest}"
    with writing_cache(folder / "key.json"):
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / "key.json").is_file():  # for people browsing the cache; not read back
            (folder / "key.json").write_text(json.dumps({**key, "num_samples": len(frames)}, indent=1))
    return folder


def time_steps(cfg) -> int:
    """`cfg.T` as a positive int (event frames need it; static images repeat over it in the model)."""
    T = cfg.get("T")
    if not isinstance(T, int) or isinstance(T, bool) or T < 1:
        raise ConfigError(f"T={T!r}: the number of event frames must be a positive integer")
    return T


def _bundle(cfg, root: Path, train: list, test: list, read: Callable) -> DataBundle:
    """Cached train/test frames (resized with `dataset.antialias`); the train augmentation comes from
    `dataset.{crop_padding, hflip, policy_ops, policy_interpolation}`."""
    ds, T = cfg.dataset, time_steps(cfg)
    size, cache_root = int(ds.image_size), Path(str(ds.cache_dir)).expanduser()
    augment = frame_augmentation(size, int(ds.crop_padding), bool(ds.hflip), list(ds.policy_ops),
                                 str(ds.policy_interpolation))
    antialias = ds.antialias
    if not isinstance(antialias, bool):
        raise ConfigError(f"dataset.antialias={antialias!r} must be true or false")
    train_frames, test_frames = (EventFrames(samples, read, T, size, antialias) for samples in (train, test))
    return DataBundle(
        train=FrameCache(train_frames, frame_cache_dir(cache_root, ds.name, "train", train_frames, root), augment),
        test=FrameCache(test_frames, frame_cache_dir(cache_root, ds.name, "test", test_frames, root)),
        num_classes=int(ds.num_classes), in_channels=int(ds.in_channels), image_size=size, temporal=True)


# ---------------------------------------------------------------------------- CIFAR10-DVS
def download_cifar10_dvs(data_dir: Path) -> None:
    """Fetch and extract tonic's CIFAR10DVS.zip into `<data_dir>/CIFAR10DVS` (tonic checks its md5)."""
    import tonic.datasets

    try:
        tonic.datasets.CIFAR10DVS(str(data_dir))
    except Exception as exc:  # network, md5 or archive errors from tonic/urllib
        raise DataError(f"could not download CIFAR10-DVS ({type(exc).__name__}: {exc}); download "
                        f"{tonic.datasets.CIFAR10DVS.url} (CIFAR10DVS.zip) by hand, unzip it into "
                        f"{data_dir / 'CIFAR10DVS'} and unzip each class zip there") from exc


def cifar10_dvs_files(data_dir: Path) -> dict:
    """{label: that class's .aedat4 files in natural sort order} from `<data_dir>/CIFAR10DVS/<class>/`."""
    import tonic.datasets

    root = data_dir / "CIFAR10DVS"
    files = {label: sorted((root / name).glob("*.aedat4"), key=lambda p: natural_key(p.name))
             for name, label in tonic.datasets.CIFAR10DVS.classes.items()}
    empty = [name for name, label in tonic.datasets.CIFAR10DVS.classes.items() if not files[label]]
    if empty:
        raise not_found(f"CIFAR10-DVS (no .aedat4 files for {', '.join(empty)})", data_dir, CIFAR10_DVS_LAYOUT,
                        f"set dataset.download=true or run `python scripts/download_dvs.py cifar10_dvs "
                        f"--data-dir {data_dir}`")
    return files


def cifar10_dvs_samples(data_dir: Path, test_per_class: int) -> tuple[list, list]:
    """(train, test): per class the first `test_per_class` files (natural order) are test, the rest train."""
    train, test = [], []
    for label, paths in cifar10_dvs_files(data_dir).items():
        test += [EventSample(p, label) for p in paths[:test_per_class]]
        train += [EventSample(p, label) for p in paths[test_per_class:]]
    return train, test


def build_cifar10_dvs(cfg) -> DataBundle:
    """CIFAR10-DVS with the published split (`dataset.test_per_class` files of each class are test)."""
    ds, data_dir = cfg.dataset, data_root(cfg)
    if ds.download and next((data_dir / "CIFAR10DVS").glob("*/*.aedat4"), None) is None:
        download_cifar10_dvs(data_dir)
    train, test = cifar10_dvs_samples(data_dir, int(ds.test_per_class))
    if importlib.util.find_spec("aedat") is None:
        raise DataError("reading CIFAR10-DVS .aedat4 files needs the `aedat` package (tonic's reader): "
                        "pip install -r requirements.txt")
    check_split_sizes("CIFAR10-DVS", data_dir, (len(train), len(test)), ds.split_sizes, CIFAR10_DVS_LAYOUT,
                      f"run `python scripts/download_dvs.py cifar10_dvs --data-dir {data_dir}`")
    return _bundle(cfg, data_dir, train, test, read_aedat4_events)


# ---------------------------------------------------------------------------- DVS128 Gesture
def _gesture_labels(path: Path) -> np.ndarray:
    """Rows (class 1-11, start µs, end µs) of a `*_labels.csv`."""
    try:
        rows = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.int64, ndmin=2)
    except ValueError as exc:
        raise DataError(f"{path} is corrupt ({exc}); expected a header and rows 'class,startTime_usec,"
                        f"endTime_usec'") from exc
    if rows.shape[1] != 3 or not ((rows[:, 0] >= 1) & (rows[:, 0] <= 11)).all():
        raise DataError(f"{path} is corrupt: expected rows 'class,startTime_usec,endTime_usec' with class 1-11")
    return rows


def ibm_gesture_samples(data_dir: Path) -> tuple[list, list]:
    """(train, test) gestures cut from the IBM recordings listed in trials_to_{train,test}.txt."""
    root = data_dir / "DvsGesture"
    splits = []
    for list_name in ("trials_to_train.txt", "trials_to_test.txt"):
        if not (root / list_name).is_file():
            raise not_found(f"DVS128 Gesture (no {list_name})", data_dir, IBM_GESTURE_LAYOUT, IBM_GESTURE_HOW)
        samples = []
        for name in (root / list_name).read_text().split():
            recording, labels = root / name, root / f"{Path(name).stem}_labels.csv"
            for path in (recording, labels):
                if not path.is_file():
                    raise not_found(f"DVS128 Gesture ({path.name}, listed in {list_name})", data_dir,
                                    IBM_GESTURE_LAYOUT, IBM_GESTURE_HOW)
            samples += [EventSample(recording, int(c) - 1, (int(s), int(e))) for c, s, e in _gesture_labels(labels)]
        splits.append(samples)
    return splits[0], splits[1]


def tonic_gesture_samples(data_dir: Path, download: bool) -> tuple[list, list]:
    """(train, test) samples of tonic's preprocessed DVSGesture (one .npy per gesture, label = file name)."""
    import tonic.datasets

    splits = []
    for folder, train in (("ibmGestureTrain", True), ("ibmGestureTest", False)):
        root = data_dir / "DVSGesture" / folder
        if download and next(root.glob("user*_*/*.npy"), None) is None:
            try:
                tonic.datasets.DVSGesture(str(data_dir), train=train)
            except Exception as exc:  # network, md5 or archive errors from tonic/urllib
                raise DataError(f"could not download tonic's DVSGesture ({type(exc).__name__}: {exc}); fetch "
                                f"{tonic.datasets.DVSGesture.train_url} and {tonic.datasets.DVSGesture.test_url} "
                                f"by hand and extract them into {data_dir / 'DVSGesture'}") from exc
        paths = sorted(root.glob("user*_*/*.npy"), key=lambda p: natural_key(p.relative_to(root).as_posix()))
        if not paths:
            raise not_found(f"tonic DVSGesture (no {folder}/user*/<label>.npy)", data_dir, TONIC_GESTURE_LAYOUT,
                            "set dataset.download=true (tonic fetches ibmGestureTrain/Test.tar.gz from figshare)")
        splits.append([EventSample(p, int(p.stem)) for p in paths])
    return splits[0], splits[1]


def build_dvs_gesture(cfg) -> DataBundle:
    """DVS128 Gesture from the original IBM archive (`dataset.source=ibm`) or tonic's copy (`tonic`)."""
    ds, data_dir = cfg.dataset, data_root(cfg)
    if ds.source == "ibm":
        train, test = ibm_gesture_samples(data_dir)
        read, layout, how = read_ibm_gesture_events, IBM_GESTURE_LAYOUT, IBM_GESTURE_HOW
    elif ds.source == "tonic":
        train, test = tonic_gesture_samples(data_dir, bool(ds.download))
        read, layout, how = read_tonic_gesture_events, TONIC_GESTURE_LAYOUT, "set dataset.download=true"
    else:
        raise ConfigError(f"dataset.source={ds.source!r}: choose 'ibm' (original archive, 1176/288 split) "
                          f"or 'tonic' (tonic's preprocessed copy, 1077/264)")
    check_split_sizes(f"DVS128 Gesture (source={ds.source})", data_dir, (len(train), len(test)),
                      (ds.split_sizes or {}).get(ds.source), layout, how)
    return _bundle(cfg, data_dir, train, test, read)
