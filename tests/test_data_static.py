"""CIFAR-10/100 and Tiny-ImageNet on fixtures in the real formats: counts, labels, recipes, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision import datasets

from arlif.data import build_data
from arlif.data.cutout import ToolboxCutout
from arlif.errors import ConfigError, DataError
from fixtures_data import cifar_checksums, run_config, run_train, write_cifar, write_tiny_imagenet

CIFAR = {"cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100}
WNIDS = ["n09999999", "n01443537", "n02124075"]  # wnids.txt order is not the label order


@pytest.fixture
def cifar_dir(tmp_path, monkeypatch):
    """Both CIFAR fixtures, with torchvision checking the fixture files' own md5s."""
    write_cifar(tmp_path, "cifar10", per_file=4)
    write_cifar(tmp_path, "cifar100", per_file=6)
    for cls in CIFAR.values():
        for attr, value in cifar_checksums(cls, tmp_path).items():
            monkeypatch.setattr(cls, attr, value)
    return tmp_path


@pytest.mark.parametrize("name, sizes, mean, std", [
    ("cifar10", (20, 4), (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    ("cifar100", (6, 6), (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
])
def test_cifar_autoaug_recipe(cifar_dir, name, sizes, mean, std):
    bundle = build_data(run_config(name, cifar_dir))
    assert (len(bundle.train), len(bundle.test)) == sizes and not bundle.temporal
    raw = CIFAR[name](str(cifar_dir), train=False)
    x, y = bundle.test[1]
    # test images: normalisation only, with the dataset's own mean and std
    expected = (torch.from_numpy(raw.data[1]).permute(2, 0, 1) / 255 - torch.tensor(mean)[:, None, None]) \
        / torch.tensor(std)[:, None, None]
    assert y == raw.targets[1] and x.dtype == torch.float32 and torch.allclose(x, expected, atol=1e-6)
    assert bundle.train[3][0].shape == (3, 32, 32)
    xb = torch.stack([bundle.train[i][0] for i in range(4)])
    yb = torch.tensor([bundle.train[i][1] for i in range(4)])
    mixed, soft = bundle.batch_transform(xb, yb)
    assert mixed.shape == xb.shape and soft.shape == (4, bundle.num_classes)
    assert torch.allclose(soft.sum(dim=1), torch.ones(4))


def test_cifar10_labels_follow_the_batches(cifar_dir):
    bundle = build_data(run_config("cifar10", cifar_dir))
    assert bundle.train.targets == [(4 + i) % 10 for i in range(20)]  # batch i starts at label 4*i
    assert bundle.test.targets == [0, 1, 2, 3]


def test_cifar_classic_recipe_cuts_out_one_square(cifar_dir):
    bundle = build_data(run_config("cifar10", cifar_dir, recipe="classic"))
    assert bundle.batch_transform is None
    torch.manual_seed(0)
    for i in range(len(bundle.train)):
        x, _ = bundle.train[i]
        zero_rows = (x == 0).all(dim=0).sum(dim=1)  # erased pixels per row
        assert x.shape == (3, 32, 32) and (zero_rows == 16).sum() == 16


def test_clif_cutout_draws_follow_torchtoolbox_defaults():
    """Seeded draws of torchtoolbox's Cutout(): erased with probability 0.5; area 2-40 % and aspect 0.4-2.5 up to
    the int() truncation of the sides; the rectangle inside the image, every corner reachable; one fill value in
    0..255 written as (v, 0, 0)."""
    cutout, n = ToolboxCutout(), 2000
    image = torch.tensor([7, 20, 30], dtype=torch.uint8)[:, None, None].expand(3, 32, 32).contiguous()
    torch.manual_seed(0)
    erased, rects = 0, []
    for _ in range(n):
        out = cutout(image)
        hit = out[1] == 0  # green is 20 outside the rectangle
        if not hit.any():
            assert torch.equal(out, image)
            continue
        erased += 1
        rows, cols = hit.any(dim=1).nonzero().flatten(), hit.any(dim=0).nonzero().flatten()
        top, left, h, w = int(rows[0]), int(cols[0]), len(rows), len(cols)
        assert int(hit.sum()) == h * w and rows[-1] - rows[0] + 1 == h and cols[-1] - cols[0] + 1 == w
        value = out[0, top, left]
        assert (out[0][hit] == value).all() and (out[2][hit] == 0).all()
        rects.append((top, left, h, w, int(value)))
    assert abs(erased / n - 0.5) < 4 * (0.25 / n) ** 0.5
    area = [h * w / 1024 for _, _, h, w, _ in rects]
    for top, left, h, w, _ in rects:
        assert h * w <= 0.4 * 1024 and (h + 1) * (w + 1) >= 0.02 * 1024
        assert h / (w + 1) <= 2.5 and (h + 1) / w >= 0.4
        assert 0 <= top <= 32 - h and 0 <= left <= 32 - w
    assert min(area) < 0.03 and max(area) > 0.33  # the whole area range is drawn
    aspect = [h / w for _, _, h, w, _ in rects]
    assert min(aspect) < 0.5 and max(aspect) > 2.0
    values = [v for *_, v in rects]
    assert 0 <= min(values) < 10 and 245 < max(values) <= 255 and abs(sum(values) / len(values) - 127.5) < 10
    draws = [cutout.rectangle(32, 32) for _ in range(3000)]  # corners: both ends of the range occur
    assert any(t == 0 for t, *_ in draws) and any(t == 32 - h for t, _, h, _, _ in draws)
    assert any(v == 0 for *_, v in draws) and any(v == 255 for *_, v in draws)


def test_clif_recipe_cuts_the_8bit_image_after_the_crop_and_before_flip_and_normalize(cifar_dir):
    bundle = build_data(run_config("cifar10", cifar_dir, recipe="clif", crop_padding=0))
    assert bundle.batch_transform is None
    names = [type(t).__name__ for t in bundle.train.transform.transforms]
    assert names == ["ToImage", "RandomCrop", "ToolboxCutout", "RandomHorizontalFlip", "ToDtype", "Normalize",
                     "ToPureTensor"]
    raw = CIFAR["cifar10"](str(cifar_dir), train=True)
    mean = torch.tensor((0.4914, 0.4822, 0.4465))[:, None, None]
    std = torch.tensor((0.2023, 0.1994, 0.2010))[:, None, None]
    torch.manual_seed(1)
    cut = 0
    for _ in range(5):
        for i in range(len(bundle.train)):
            x, _ = bundle.train[i]
            clean = (torch.from_numpy(raw.data[i]).permute(2, 0, 1) / 255 - mean) / std
            if normalized_or_flipped(x, clean):
                continue
            cut += 1
            changed = ~(torch.isclose(x, clean, atol=1e-5) | torch.isclose(x, clean.flip(-1), atol=1e-5)).all(dim=0)
            fill = x[:, changed]  # the erased pixels, normalised: ((v / 255 - mean) / std, -mean / std, -mean / std)
            assert torch.allclose(fill[1:], (-mean / std)[1:, 0], atol=1e-5)
            v = (fill[0] * std[0, 0, 0] + mean[0, 0, 0]) * 255
            assert torch.allclose(v, v[0]) and 0 <= round(float(v[0])) <= 255 and abs(v[0] - v[0].round()) < 1e-3
    assert 0 < cut < 100


def normalized_or_flipped(x, expected):
    return torch.allclose(x, expected, atol=1e-5) or torch.allclose(x, expected.flip(-1), atol=1e-5)


def test_cifar_crop_flip_recipe_only_crops_and_flips(cifar_dir):
    """crop_flip is RandomCrop(padding) -> flip -> normalize: without padding each training image is the
    normalised image or its mirror image (no Cutout, no RandAugment, no batch mixing)."""
    bundle = build_data(run_config("cifar10", cifar_dir, recipe="crop_flip", crop_padding=0))
    assert bundle.batch_transform is None
    raw = CIFAR["cifar10"](str(cifar_dir), train=True)
    mean = torch.tensor((0.4914, 0.4822, 0.4465))[:, None, None]
    std = torch.tensor((0.2023, 0.1994, 0.2010))[:, None, None]
    torch.manual_seed(0)
    for i in range(len(bundle.train)):
        expected = (torch.from_numpy(raw.data[i]).permute(2, 0, 1) / 255 - mean) / std
        assert normalized_or_flipped(bundle.train[i][0], expected)


def test_cifar_missing_corrupt_and_bad_recipe(cifar_dir, tmp_path_factory):
    empty = tmp_path_factory.mktemp("empty")
    with pytest.raises(DataError, match="not found or incomplete") as err:
        build_data(run_config("cifar100", empty))
    assert "cifar-100-python/{train, test, meta}" in str(err.value) and "dataset.download=true" in str(err.value)
    batch = cifar_dir / "cifar-10-batches-py" / "data_batch_3"
    data = bytearray(batch.read_bytes())
    data[-10] ^= 0xFF
    batch.write_bytes(bytes(data))
    with pytest.raises(DataError, match=f"{batch} is corrupt \\(md5 mismatch\\)"):
        build_data(run_config("cifar10", cifar_dir))
    with pytest.raises(ConfigError, match="dataset.recipe='trivial'"):
        build_data(run_config("cifar10", cifar_dir, recipe="trivial"))


@pytest.fixture
def tiny_dir(tmp_path):
    write_tiny_imagenet(tmp_path, WNIDS, train_per_class=2, val_per_class=2)
    return tmp_path


def tiny_cfg(root):
    return run_config("tiny_imagenet", root, num_classes=3, split_sizes=[6, 6])


def test_tiny_imagenet_layout_labels_and_transforms(tiny_dir):
    bundle = build_data(tiny_cfg(tiny_dir))
    assert (len(bundle.train), len(bundle.test)) == (6, 6) and bundle.image_size == 64
    order = sorted(WNIDS)
    for path, label in bundle.train.samples:
        assert f"/train/{order[label]}/images/" in path
    assert bundle.test.targets == [order.index(WNIDS[i % 3]) for i in range(6)]  # from val_annotations.txt
    x, y = bundle.test[0]
    from PIL import Image
    pixels = np.asarray(Image.open(bundle.test.samples[0][0]).convert("RGB"), dtype=np.float32) / 255
    expected = (torch.from_numpy(pixels).permute(2, 0, 1) - torch.tensor([0.4802, 0.4481, 0.3975])[:, None, None]) \
        / torch.tensor([0.2302, 0.2265, 0.2262])[:, None, None]
    assert torch.allclose(x, expected, atol=1e-5) and y == bundle.test.targets[0]
    torch.manual_seed(0)
    assert all(bundle.train[i][0].shape == (3, 64, 64) for i in range(6))


def test_tiny_imagenet_crop_flip_recipe_has_no_trivialaugment(tiny_dir):
    from PIL import Image
    bundle = build_data(run_config("tiny_imagenet", tiny_dir, num_classes=3, split_sizes=[6, 6], recipe="crop_flip"))
    mean = torch.tensor([0.4802, 0.4481, 0.3975])[:, None, None]
    std = torch.tensor([0.2302, 0.2265, 0.2262])[:, None, None]
    published = build_data(tiny_cfg(tiny_dir))
    torch.manual_seed(0)
    changed = []
    for i, (path, _) in enumerate(bundle.train.samples):
        pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255
        expected = (torch.from_numpy(pixels).permute(2, 0, 1) - mean) / std
        assert normalized_or_flipped(bundle.train[i][0], expected)
        changed.append(not normalized_or_flipped(published.train[i][0], expected))
    assert any(changed)  # the published recipe's TrivialAugmentWide does more than flip
    with pytest.raises(ConfigError, match="dataset.recipe='autoaug'"):
        build_data(run_config("tiny_imagenet", tiny_dir, num_classes=3, split_sizes=[6, 6], recipe="autoaug"))


def test_tiny_imagenet_missing_incomplete_and_corrupt(tiny_dir, tmp_path_factory):
    with pytest.raises(DataError, match="download_tiny_imagenet.py") as err:
        build_data(tiny_cfg(tmp_path_factory.mktemp("empty")))
    assert "tiny-imagenet-200/{wnids.txt, train/<wnid>/images/*.JPEG" in str(err.value)
    with pytest.raises(DataError, match=r"6 train / 6 test samples where dataset.split_sizes=\[100000, 10000\]"):
        build_data(run_config("tiny_imagenet", tiny_dir, num_classes=3))
    bad = tiny_dir / "tiny-imagenet-200" / "val" / "images" / "val_2.JPEG"
    bad.write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(DataError, match=f"cannot read image {bad}"):
        build_data(tiny_cfg(tiny_dir)).test[2]
    bad.unlink()
    with pytest.raises(DataError, match="val image val_2.JPEG listed in val_annotations.txt"):
        build_data(tiny_cfg(tiny_dir))


# All `-m slow`: the default suite trains CIFAR-10's fixture through train.py in test_faults.py (the published
# autoaug recipe) and CIFAR10-DVS's in test_data_events.py; these repeat that path with each dataset's own files.
@pytest.mark.slow
@pytest.mark.parametrize("name", ["cifar10", "cifar100", "tiny_imagenet"])
def test_two_batch_training_run_through_train_py(cifar_dir, tmp_path, name):
    if name == "tiny_imagenet":
        write_tiny_imagenet(cifar_dir, WNIDS, train_per_class=2, val_per_class=2)
    overrides = ["dataset.num_classes=3", "dataset.split_sizes=[6,6]"] if name == "tiny_imagenet" else []
    result = run_train(cifar_dir, tmp_path / "run", [f"dataset={name}", *overrides], cifar_fixture=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "run" / "summary.json").is_file()


def test_cifar_download_failure_is_a_data_error(tmp_path, monkeypatch):
    from urllib.error import URLError

    def offline(url, *args, **kwargs):
        raise URLError("network is unreachable")

    monkeypatch.setattr(datasets.cifar, "download_and_extract_archive", offline)
    with pytest.raises(DataError, match="could not download CIFAR10 from https://www.cs.toronto.edu/"):
        build_data(run_config("cifar10", tmp_path, download=True))
