"""Event datasets on fixtures in the real formats: split rules, frames, cache, augmentation, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from arlif.data import build_data, events
from arlif.data.augment import OPS, OneOpPerSample, frame_augmentation
from arlif.errors import ConfigError, DataError
from fixtures_data import (CIFAR10_DVS_CLASSES, random_events, run_config, run_train, write_aedat31, write_cifar10_dvs,
                           write_ibm_gesture, write_tonic_gesture)

# Unpadded numbers: the natural order (0, 1, 2, 10) differs from the string order (0, 1, 10, 2).
DVS_NUMBERS = [0, 1, 2, 10]
EVENTS_PER_FILE = 402  # T=4 -> 100 events per frame, 2 leftover events dropped
IBM_TRAIN = {"user01_fluorescent": [(1, 203), (5, 150), (11, 99)], "user02_led": [(2, 80)]}
IBM_TEST = {"user24_lab": [(3, 203), (4, 121)]}


@pytest.fixture(scope="module")
def dvs_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar10_dvs")
    write_cifar10_dvs(root, DVS_NUMBERS, EVENTS_PER_FILE)
    return root


@pytest.fixture(scope="module")
def ibm_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("dvs_gesture")
    # timestamps past 2^31 µs: the reader must add the packet's overflow count
    written = write_ibm_gesture(root, IBM_TRAIN, IBM_TEST, t0=2**31 + 1000)
    return root, written


def dvs_cfg(root, T=4, **overrides):
    return run_config("cifar10_dvs", root, T=T, test_per_class=3, split_sizes=[10, 30], **overrides)


def ibm_cfg(root, T=4):
    return run_config("dvs_gesture", root, T=T, split_sizes={"ibm": [4, 2], "tonic": None})


def test_cifar10_dvs_split_labels_and_frames(dvs_dir):
    bundle = build_data(dvs_cfg(dvs_dir))
    assert (len(bundle.train), len(bundle.test)) == (10, 30)
    assert bundle.temporal and (bundle.in_channels, bundle.image_size, bundle.num_classes) == (2, 48, 10)
    for split, numbers in ((bundle.test, {0, 1, 2}), (bundle.train, {10})):
        for sample in split.frames.samples:
            cls_name, number = sample.path.stem.split("_")[1:]
            assert sample.path.parent.name == cls_name
            assert sample.label == CIFAR10_DVS_CLASSES.index(cls_name)
            assert int(number) in numbers
    x, y = bundle.test[4]
    assert y == 1 and x.dtype == torch.float32 and x.shape == (4, 2, 48, 48)
    # 100 events per frame; the antialiased 128 -> 48 resize keeps the mass per area
    # (events lie away from the border), a plain bilinear subsampling would not
    assert torch.allclose(x.sum(dim=(1, 2, 3)), torch.full((4,), 100 * (48 / 128) ** 2), rtol=0.02)


def test_ibm_gesture_cut_from_recordings(ibm_dir):
    root, written = ibm_dir
    bundle = build_data(ibm_cfg(root))
    assert (len(bundle.train), len(bundle.test)) == (4, 2)
    assert [label for _, label in (bundle.train[i] for i in range(4))] == [0, 4, 10, 1]
    for index, ev in enumerate(written["user24_lab"]):
        x, label = bundle.test[index]
        assert label == IBM_TEST["user24_lab"][index][0] - 1
        assert x.dtype == torch.float32 and x.shape == (4, 2, 128, 128)
        # exactly the gesture's valid events, floor(n/4) per frame in time order, leftover dropped
        per_frame = len(ev["t"]) // 4
        expected = np.zeros((4, 2, 128, 128), dtype=np.float32)
        for k in range(4):
            part = slice(k * per_frame, (k + 1) * per_frame)
            np.add.at(expected[k], (ev["p"][part], ev["y"][part], ev["x"][part]), 1)
        assert np.array_equal(x.numpy(), expected)


def test_aedat31_fixture_matches_tonic_packet_reader(tmp_path):
    """tonic's own AEDAT 3.x packet walker reads the same raw events from the fixture format."""
    import tonic.io

    ev = random_events(150, seed=3)
    path = tmp_path / "rec.aedat"
    write_aedat31(path, ev)
    version, start, _ = tonic.io.read_aedat_header_from_file(str(path))
    raw = tonic.io.get_aer_events_from_file(str(path), version, start)[1:]  # tonic keeps the special event
    assert version == 3.1 and np.array_equal(raw["timeStamp"], ev["t"])
    ours = events.read_aedat31(path)
    assert np.array_equal(ours["x"], ev["x"]) and np.array_equal(ours["y"], ev["y"])
    assert np.array_equal(ours["p"], ev["p"].astype(bool)) and np.array_equal(ours["t"], ev["t"])


def test_tonic_gesture_source(tmp_path):
    write_tonic_gesture(tmp_path, {"user01_led": [0, 1, 2], "user02_lab": [7]}, {"user24_led": [4, 10]})
    cfg = run_config("dvs_gesture", tmp_path, T=3, source="tonic", split_sizes={"ibm": None, "tonic": [4, 2]})
    bundle = build_data(cfg)
    assert [s.label for s in bundle.train.frames.samples] == [0, 1, 2, 7]
    x, y = bundle.test[1]
    assert y == 10 and x.shape == (3, 2, 128, 128) and x.sum() == 3 * (300 // 3)


def test_cache_reused_and_rebuilt_when_T_changes(dvs_dir, monkeypatch):
    first = build_data(dvs_cfg(dvs_dir, cache_dir=str(dvs_dir / "cache")))
    frames = [first.test[i][0] for i in range(len(first.test))]

    def no_reading(sample):
        raise AssertionError(f"{sample.path} was read although its frames are cached")

    monkeypatch.setattr(events, "read_aedat4_events", no_reading)
    again = build_data(dvs_cfg(dvs_dir, cache_dir=str(dvs_dir / "cache")))
    assert again.test.folder == first.test.folder
    assert all(torch.equal(again.test[i][0], frames[i]) for i in range(len(frames)))
    with pytest.raises(DataError, match="was read"):  # T=2 is a new cache, so it reads events again
        build_data(dvs_cfg(dvs_dir, T=2, cache_dir=str(dvs_dir / "cache"))).test[0]
    monkeypatch.undo()
    other = build_data(dvs_cfg(dvs_dir, T=2, cache_dir=str(dvs_dir / "cache")))
    assert other.test.folder != first.test.folder and other.test[0][0].shape == (2, 2, 48, 48)
    assert len(list(first.test.folder.glob("*.npz"))) == len(first.test)


def test_antialiasing_is_part_of_the_cache_key_and_changes_the_frames(dvs_dir):
    """dataset.antialias=false (the PSN and TEBN code's plain bilinear Resize) caches apart from the antialiased
    frames, and its frames are torchvision's resize without antialiasing."""
    cache = str(dvs_dir / "cache")
    smooth = build_data(dvs_cfg(dvs_dir, cache_dir=cache)).test
    plain = build_data(dvs_cfg(dvs_dir, cache_dir=cache, antialias=False)).test
    assert plain.folder != smooth.folder and plain.folder.parent == smooth.folder.parent
    assert '"resize": "bilinear"' in (plain.folder / "key.json").read_text()
    counts = torch.from_numpy(plain.frames.to_frame(events.read_aedat4_events(plain.frames.samples[0]))).float()
    want = torch.nn.functional.interpolate(counts, size=(48, 48), mode="bilinear", align_corners=False,
                                           antialias=False)
    assert torch.allclose(plain[0][0], want) and not torch.allclose(smooth[0][0], want)
    with pytest.raises(ConfigError, match="dataset.antialias"):
        build_data(dvs_cfg(dvs_dir, cache_dir=cache, antialias="yes"))
FUZZ_ROUNDS = 240


def damage(data: bytes, rng: np.random.Generator) -> bytes:
    """`data` damaged one of the ways a file on a shared disk gets damaged: flipped bits, a cut, a zeroed
    or overwritten stretch, garbage appended, or the digest replaced by a readable .npz of other frames."""
    way = rng.integers(6)
    out = bytearray(data)
    if way == 0:
        for offset in rng.integers(len(out), size=rng.integers(1, 9)):
            out[offset] ^= 1 << int(rng.integers(8))
    elif way == 1:
        return bytes(out[:rng.integers(len(out))])
    elif way in (2, 3):
        start = int(rng.integers(len(out)))
        end = min(len(out), start + int(rng.integers(1, 64)))
        out[start:end] = bytes(end - start) if way == 2 else rng.bytes(end - start)
    elif way == 4:
        out += rng.bytes(int(rng.integers(1, 64)))
    else:
        return data[events.DIGEST_SIZE:]  # a plain .npz, as the former cache format wrote it
    return bytes(out)


def test_every_damaged_cache_file_is_rebuilt(dvs_dir, tmp_path):
    """FUZZ_ROUNDS seeded rounds: a cached file damaged at random must read back as the undamaged frames."""
    bundle = build_data(dvs_cfg(dvs_dir, cache_dir=str(tmp_path / "cache")))
    cache = bundle.test
    truth = [torch.from_numpy(cache.frames[i][0]).float() for i in range(len(cache))]
    assert all(torch.equal(cache[i][0], truth[i]) for i in range(len(cache)))  # every file cached
    rng = np.random.default_rng(28)
    for _ in range(FUZZ_ROUNDS):
        index = int(rng.integers(len(cache)))
        path = cache.folder / f"{index}.npz"
        intact = path.read_bytes()
        damaged = damage(intact, rng)
        assert damaged != intact
        path.write_bytes(damaged)
        assert torch.equal(cache[index][0], truth[index])
        assert path.read_bytes() == intact  # rebuilt as it was
    assert not list(cache.folder.glob("*.partial"))


def test_train_samples_are_augmented_after_the_cache(dvs_dir):
    bundle = build_data(dvs_cfg(dvs_dir, cache_dir=str(dvs_dir / "cache")))
    torch.manual_seed(0)
    draws = [bundle.train[0][0] for _ in range(6)]
    assert all(x.shape == (4, 2, 48, 48) and x.dtype == torch.float32 for x in draws)
    assert any(not torch.equal(draws[0], x) for x in draws[1:])
    assert list(bundle.train.folder.glob("0.npz"))  # one cached copy, augmented on each read


@pytest.mark.parametrize("op", OPS)
def test_each_op_is_shared_by_all_frames(op):
    torch.manual_seed(0)
    frame = torch.zeros(2, 48, 48)
    frame[0, 10:30, 12:20] = 3.0
    frame[1, 25:40, 20:44] = 1.0
    clip = frame.expand(5, 2, 48, 48).clone()
    policy = OneOpPerSample([op])
    outputs = [policy(clip) for _ in range(8)]
    for out in outputs:
        assert out.shape == clip.shape and out.dtype == clip.dtype
        assert all(torch.equal(out[t], out[0]) for t in range(5))
    changed = any(not torch.equal(out, clip) for out in outputs)
    assert changed == (op != "identity")


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
def test_full_augmentation_keeps_shape_and_frames_together(interpolation):
    torch.manual_seed(1)
    augment = frame_augmentation(48, crop_padding=4, hflip=True, ops=list(OPS), interpolation=interpolation)
    clip = torch.rand(1, 2, 48, 48).expand(6, 2, 48, 48).clone()
    for _ in range(20):
        out = augment(clip)
        assert out.shape == clip.shape and all(torch.equal(out[t], out[0]) for t in range(6))


def test_unknown_op_or_interpolation_is_a_config_error():
    with pytest.raises(ConfigError, match="policy_ops"):
        OneOpPerSample(["identity", "solarize"])
    with pytest.raises(ConfigError, match="policy_interpolation='bicubic'"):
        OneOpPerSample(["rotate"], interpolation="bicubic")


@pytest.mark.parametrize("name, overrides, expected", [
    ("cifar10_dvs", {}, ["CIFAR10DVS/<class>/*.aedat4", "scripts/download_dvs.py cifar10_dvs"]),
    ("dvs_gesture", {}, ["DvsGesture/{trials_to_train.txt", "DvsGesture.tar.gz", "ibm.ent.box.com"]),
    ("dvs_gesture", {"source": "tonic"}, ["DVSGesture/{ibmGestureTrain", "dataset.download=true"]),
])
def test_missing_dataset_names_layout_and_source(tmp_path, name, overrides, expected):
    with pytest.raises(DataError, match="not found or incomplete") as err:
        build_data(run_config(name, tmp_path, **overrides))
    assert all(text in str(err.value) for text in expected)
    assert not (tmp_path / "frame_cache").exists()


def test_incomplete_copies_are_reported(dvs_dir, ibm_dir, tmp_path):
    with pytest.raises(DataError, match=r"10 train / 30 test samples where dataset.split_sizes=\[9000, 1000\]"):
        build_data(run_config("cifar10_dvs", dvs_dir, test_per_class=3))
    with pytest.raises(DataError, match=r"4 train / 2 test samples .*\[1176, 288\]"):
        build_data(run_config("dvs_gesture", ibm_dir[0]))
    root = tmp_path / "DvsGesture"
    root.mkdir()
    (root / "trials_to_train.txt").write_text("user01_led.aedat\n")
    (root / "trials_to_test.txt").write_text("")
    with pytest.raises(DataError, match="user01_led.aedat, listed in trials_to_train.txt"):
        build_data(ibm_cfg(tmp_path))


def test_corrupt_files_are_named(dvs_dir, ibm_dir, tmp_path):
    import shutil

    shutil.copytree(dvs_dir / "CIFAR10DVS", tmp_path / "CIFAR10DVS")
    bad = tmp_path / "CIFAR10DVS" / "bird" / "cifar10_bird_1.aedat4"
    bad.write_bytes(b"not an aedat4 file")
    bundle = build_data(dvs_cfg(tmp_path))
    with pytest.raises(DataError, match=f"cannot turn {bad} into frames"):
        bundle.test[7]

    recording = tmp_path / "rec.aedat"
    shutil.copy(ibm_dir[0] / "DvsGesture" / "user02_led.aedat", recording)
    recording.write_bytes(recording.read_bytes()[:-5])
    with pytest.raises(DataError, match=f"{recording} is corrupt .*truncated"):
        events.read_aedat31(recording)
    labels = ibm_dir[0] / "DvsGesture" / "user02_led_labels.csv"
    (tmp_path / "bad_labels.csv").write_text("class,startTime_usec,endTime_usec\n12,0,10\n")
    with pytest.raises(DataError, match="bad_labels.csv is corrupt"):
        events._gesture_labels(tmp_path / "bad_labels.csv")
    assert events._gesture_labels(labels).shape == (1, 3)


def test_bad_settings_are_config_errors(ibm_dir):
    with pytest.raises(ConfigError, match="dataset.source='dvs'"):
        build_data(run_config("dvs_gesture", ibm_dir[0], source="dvs"))
    with pytest.raises(ConfigError, match="T=0"):
        build_data(ibm_cfg(ibm_dir[0], T=0))


# CIFAR10-DVS through train.py by default; DVS128 Gesture repeats that path with its own files (`-m slow`).
@pytest.mark.parametrize("name", ["cifar10_dvs", pytest.param("dvs_gesture", marks=pytest.mark.slow)])
def test_two_batch_training_run_through_train_py(dvs_dir, ibm_dir, tmp_path, name):
    # (Gesture frames are resized to 32x32 here only to keep the small model fast on a CPU)
    data_dir, overrides = ((dvs_dir, ["dataset.test_per_class=3", "dataset.split_sizes=[10,30]"])
                           if name == "cifar10_dvs" else
                           (ibm_dir[0], ["dataset.split_sizes.ibm=[4,2]", "dataset.image_size=32"]))
    result = run_train(data_dir, tmp_path / "run", [f"dataset={name}", *overrides])
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "run" / "summary.json").is_file()


def test_train_py_reports_missing_data_without_traceback_or_results(tmp_path):
    result = run_train(tmp_path / "data", tmp_path / "run", ["dataset=dvs_gesture"])
    assert result.returncode == 2
    assert result.stderr.startswith("error: DVS128 Gesture (no trials_to_train.txt) not found or incomplete under")
    assert "Traceback" not in result.stderr
    leftovers = [p.name for p in (tmp_path / "run").rglob("*") if p.suffix in (".pt", ".json", ".jsonl")]
    assert leftovers == []
