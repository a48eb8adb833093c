"""Static image datasets with the published preprocessing: CIFAR-10/100 and Tiny-ImageNet.

Samples are float32 `[3, H, W]` tensors; the model repeats each image at every time
step (direct encoding).  Files are read by torchvision (CIFAR, with its md5 checks) or
from the standard `tiny-imagenet-200` folder.  See docs/datasets.md for the recipes.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision import datasets
from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset
from torchvision.datasets.utils import check_integrity, download_and_extract_archive
from torchvision.transforms import v2

from arlif.data import DataBundle
from arlif.data.cutout import ToolboxCutout
from arlif.data.layout import check_split_sizes, data_root, not_found
from arlif.errors import ConfigError, DataError

# dataset.name -> torchvision class (its folder, files and md5s are class attributes)
CIFAR_CLASSES = {"cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100}

TINY_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
TINY_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"
TINY_LAYOUT = ("<data_dir>/tiny-imagenet-200/{wnids.txt, train/<wnid>/images/*.JPEG, "
               "val/images/*.JPEG, val/val_annotations.txt}")


def _tensor_and_normalize(mean, std) -> list:
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]


def cifar_transforms(ds) -> tuple:
    """(train transform, test transform, batch transform) for `dataset.recipe` autoaug, classic, crop_flip or clif.

    autoaug (published): flip -> RandAugment (bilinear) -> normalize -> RandomErasing, and
    per batch Mixup or CutMix (one of the two, chosen at random) giving soft targets; no crop.
    classic: RandomCrop(padding) -> flip -> normalize -> Cutout (one zero square, p=1).
    crop_flip: RandomCrop(padding) -> flip -> normalize (GLIF's and TEBN's CIFAR pipeline).
    clif: RandomCrop(padding) -> torchtoolbox's Cutout on the 8-bit image (arlif.data.cutout) -> flip ->
    normalize (CLIF's CIFAR pipeline).
    """
    normalize = _tensor_and_normalize(ds.mean, ds.std)
    test = v2.Compose([*normalize, v2.ToPureTensor()])
    if ds.recipe == "autoaug":
        train = v2.Compose([v2.RandomHorizontalFlip(),
                            v2.RandAugment(num_ops=int(ds.randaugment_ops), magnitude=int(ds.randaugment_magnitude),
                                           interpolation=v2.InterpolationMode.BILINEAR),
                            *normalize,
                            v2.RandomErasing(p=float(ds.random_erasing), value=0),
                            v2.ToPureTensor()])
        batch = v2.RandomChoice([v2.MixUp(alpha=float(ds.mixup_alpha), num_classes=int(ds.num_classes)),
                                 v2.CutMix(alpha=float(ds.cutmix_alpha), num_classes=int(ds.num_classes))])
        return train, test, batch
    if ds.recipe in ("classic", "crop_flip"):
        steps = [v2.RandomCrop(int(ds.image_size), padding=int(ds.crop_padding)), v2.RandomHorizontalFlip(), *normalize]
        if ds.recipe == "classic":
            area = (int(ds.cutout_size) / int(ds.image_size)) ** 2
            steps.append(v2.RandomErasing(p=1.0, scale=(area, area), ratio=(1.0, 1.0), value=0))
        return v2.Compose([*steps, v2.ToPureTensor()]), test, None
    if ds.recipe == "clif":
        to_image, *to_float = normalize
        steps = [to_image, v2.RandomCrop(int(ds.image_size), padding=int(ds.crop_padding)), ToolboxCutout(),
                 v2.RandomHorizontalFlip(), *to_float, v2.ToPureTensor()]
        return v2.Compose(steps), test, None
    raise ConfigError(f"dataset.recipe={ds.recipe!r}: choose 'autoaug' (published), 'classic', 'crop_flip' or 'clif'")


def _cifar_files(cls) -> list:
    """(file name, md5) of every file torchvision checks for this CIFAR class."""
    return [*cls.train_list, *cls.test_list, [cls.meta["filename"], cls.meta["md5"]]]


def _open_cifar(cls, root: Path, train: bool, download: bool, transform) -> Dataset:
    """The torchvision dataset, with its missing/corrupt/download failures turned into DataError."""
    folder = root / cls.base_folder
    layout = f"<data_dir>/{cls.base_folder}/{{{', '.join(name for name, _ in _cifar_files(cls))}}}"
    how = (f"set dataset.download=true (torchvision fetches {cls.url}), or download that archive "
           f"and extract it into {root}")
    try:
        return cls(str(root), train=train, transform=transform, download=download)
    except RuntimeError as exc:  # torchvision's "not found or corrupted"
        missing = [name for name, _ in _cifar_files(cls) if not (folder / name).is_file()]
        if missing:
            raise not_found(f"{cls.__name__} (missing {', '.join(missing)})", root, layout, how) from exc
        corrupt = [name for name, md5 in _cifar_files(cls) if not check_integrity(str(folder / name), md5)]
        culprit = folder / corrupt[0] if corrupt else folder
        raise DataError(f"{culprit} is corrupt ({'md5 mismatch' if corrupt else exc}): delete {folder} and "
                        f"{root / cls.filename}, then {how}") from exc
    except OSError as exc:  # network failures during download
        raise DataError(f"could not download {cls.__name__} from {cls.url} ({exc}); download the "
                        f"archive by hand and extract it into {root}") from exc


def build_cifar(cfg) -> DataBundle:
    """CIFAR-10 or CIFAR-100 (by `dataset.name`) from `<data_dir>/cifar-*-python` via torchvision."""
    ds = cfg.dataset
    if ds.name not in CIFAR_CLASSES:
        raise ConfigError(f"dataset.name={ds.name!r}: build_cifar knows {sorted(CIFAR_CLASSES)}")
    cls, root = CIFAR_CLASSES[ds.name], data_root(cfg)
    train_tf, test_tf, batch = cifar_transforms(ds)
    train = _open_cifar(cls, root, True, bool(ds.download), train_tf)
    test = _open_cifar(cls, root, False, False, test_tf)
    if len(train.classes) != int(ds.num_classes):
        raise ConfigError(f"dataset.num_classes={ds.num_classes} but {cls.__name__} has {len(train.classes)} classes")
    return DataBundle(train=train, test=test, num_classes=int(ds.num_classes), in_channels=3,
                      image_size=int(ds.image_size), temporal=False, batch_transform=batch)


class ImageFiles(Dataset):
    """(path, label) pairs read as RGB images; an unreadable file raises DataError naming it."""

    def __init__(self, samples: list, transform) -> None:
        self.samples = samples
        self.targets = [label for _, label in samples]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        try:
            with Image.open(path) as img:
                image = img.convert("RGB")
        except (OSError, UnidentifiedImageError) as exc:
            raise DataError(f"cannot read image {path} ({exc}): the file is corrupt; replace it "
                            f"from a fresh copy of the dataset") from exc
        return self.transform(image), label


def tiny_imagenet_samples(data_dir: Path) -> tuple[list, list, list]:
    """(class wnids, train samples, val samples) of `<data_dir>/tiny-imagenet-200`.

    Labels index the sorted wnids; train images are `train/<wnid>/images/*`, val labels
    come from `val/val_annotations.txt` (file, wnid, box).
    """
    root = data_dir / "tiny-imagenet-200"
    how = (f"run `python scripts/download_tiny_imagenet.py --data-dir {data_dir}` or set dataset.download=true "
           f"({TINY_URL})")
    annotations = root / "val" / "val_annotations.txt"
    if not ((root / "wnids.txt").is_file() and (root / "train").is_dir() and annotations.is_file()):
        raise not_found("Tiny-ImageNet", data_dir, TINY_LAYOUT, how)
    wnids = sorted((root / "wnids.txt").read_text().split())
    class_to_idx = {wnid: i for i, wnid in enumerate(wnids)}
    missing = [wnid for wnid in wnids if not (root / "train" / wnid / "images").is_dir()]
    if missing:
        raise not_found(f"Tiny-ImageNet (no train/{missing[0]}/images, {len(missing)} class folders missing)",
                        data_dir, TINY_LAYOUT, how)
    train = make_dataset(str(root / "train"), class_to_idx, extensions=IMG_EXTENSIONS)
    val = []
    for number, line in enumerate(annotations.read_text().splitlines(), 1):
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in class_to_idx:
            raise DataError(f"{annotations} line {number} is corrupt (expected '<file>\\t<wnid>\\t<box>' with a "
                            f"wnid from wnids.txt): {line!r}")
        image = root / "val" / "images" / fields[0]
        if not image.is_file():
            raise not_found(f"Tiny-ImageNet (val image {image.name} listed in val_annotations.txt)",
                            data_dir, TINY_LAYOUT, how)
        val.append((str(image), class_to_idx[fields[1]]))
    return wnids, train, val


def download_tiny_imagenet(data_dir: Path) -> None:
    """Download and extract the standard archive into `data_dir` (md5-checked by torchvision)."""
    try:
        download_and_extract_archive(TINY_URL, download_root=str(data_dir), md5=TINY_MD5)
    except (OSError, RuntimeError) as exc:
        raise DataError(f"could not download Tiny-ImageNet from {TINY_URL} ({exc}); download "
                        f"tiny-imagenet-200.zip by hand (md5 {TINY_MD5}) and unzip it into {data_dir}") from exc


def tiny_imagenet_transforms(ds) -> tuple:
    """(train, test) transforms for `dataset.recipe`: trivialaugment (published) RandomCrop -> flip ->
    TrivialAugmentWide -> normalize, or crop_flip (CLIF's Tiny-ImageNet pipeline) without TrivialAugmentWide;
    test normalizes only.  A config without the key (older checkpoints) is trivialaugment."""
    recipe = ds.get("recipe", "trivialaugment")
    if recipe not in ("trivialaugment", "crop_flip"):
        raise ConfigError(f"dataset.recipe={recipe!r}: choose 'trivialaugment' (published) or 'crop_flip'")
    normalize = _tensor_and_normalize(ds.mean, ds.std)
    policy = [v2.TrivialAugmentWide()] if recipe == "trivialaugment" else []
    train = v2.Compose([v2.RandomCrop(int(ds.image_size)), v2.RandomHorizontalFlip(), *policy,
                        *normalize, v2.ToPureTensor()])
    return train, v2.Compose([*normalize, v2.ToPureTensor()])


def build_tiny_imagenet(cfg) -> DataBundle:
    """Tiny-ImageNet-200 from `<data_dir>/tiny-imagenet-200`: train 500 / val 50 images per class."""
    ds, data_dir = cfg.dataset, data_root(cfg)
    if ds.download and not (data_dir / "tiny-imagenet-200" / "wnids.txt").is_file():
        download_tiny_imagenet(data_dir)
    wnids, train, val = tiny_imagenet_samples(data_dir)
    if len(wnids) != int(ds.num_classes):
        raise ConfigError(f"dataset.num_classes={ds.num_classes} but wnids.txt lists {len(wnids)} classes")
    check_split_sizes("Tiny-ImageNet", data_dir, (len(train), len(val)), ds.split_sizes, TINY_LAYOUT,
                      f"run `python scripts/download_tiny_imagenet.py --data-dir {data_dir}`")
    train_tf, test_tf = tiny_imagenet_transforms(ds)
    return DataBundle(train=ImageFiles(train, train_tf), test=ImageFiles(val, test_tf),
                      num_classes=int(ds.num_classes), in_channels=3, image_size=int(ds.image_size),
                      temporal=False)
