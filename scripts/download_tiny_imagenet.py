"""Download Tiny-ImageNet-200 and check it: fetches the standard tiny-imagenet-200.zip
(cs231n.stanford.edu, md5-checked), extracts it into DATA_DIR and checks the layout and
image counts that `dataset=tiny_imagenet` expects.

    python scripts/download_tiny_imagenet.py --data-dir ./data
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

from omegaconf import OmegaConf

from arlif.runner.cli import run_cli
from arlif.data.layout import check_split_sizes, no_empty_folders_left
from arlif.data.static import TINY_LAYOUT, download_tiny_imagenet, tiny_imagenet_samples


def prepare(data_dir: Path) -> None:
    """Download unless already extracted, then check layout and counts against conf/dataset/tiny_imagenet.yaml."""
    if not (data_dir / "tiny-imagenet-200" / "wnids.txt").is_file():
        download_tiny_imagenet(data_dir)
    wnids, train, val = tiny_imagenet_samples(data_dir)
    expected = OmegaConf.load(REPO / "conf" / "dataset" / "tiny_imagenet.yaml").split_sizes
    check_split_sizes("Tiny-ImageNet", data_dir, (len(train), len(val)), expected, TINY_LAYOUT,
                      "delete the folder and run this script again")
    print(f"Tiny-ImageNet is ready in {data_dir / 'tiny-imagenet-200'}: {len(wnids)} classes, "
          f"{len(train)} train and {len(val)} val images. Train with: python train.py dataset=tiny_imagenet "
          f"data_dir={data_dir}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.environ.get("ARLIF_DATA", "./data"),
                        help="folder that holds the datasets (default: $ARLIF_DATA or ./data)")
    args = parser.parse_args()
    data_dir = Path(args.data_dir).expanduser()

    def attempt() -> None:
        with no_empty_folders_left(data_dir):  # a failed download leaves no empty dataset folders
            prepare(data_dir)

    run_cli(attempt)


if __name__ == "__main__":
    main()
