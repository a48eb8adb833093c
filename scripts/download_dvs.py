"""Get the event datasets into DATA_DIR and check them against what the configs expect.

    python scripts/download_dvs.py cifar10_dvs --data-dir ./data
        tonic downloads CIFAR10DVS.zip from figshare (md5-checked) and unzips it into
        ./data/CIFAR10DVS/<class>/*.aedat4
    python scripts/download_dvs.py dvs_gesture --archive ~/Downloads/DvsGesture.tar.gz --data-dir ./data
        extracts IBM's original archive into ./data/DvsGesture (the published 1176/288 protocol).
        The archive cannot be fetched by a script: download it from IBM's Box folder
        https://ibm.ent.box.com/s/3hiq58ww1pbbjrinh367ykfdf60xsfm8/folder/50167556794
        (linked from https://research.ibm.com/interactive/dvsgesture/).  Without --archive
        the command only checks ./data/DvsGesture and says what is missing.
    python scripts/download_dvs.py dvs_gesture --source tonic --data-dir ./data
        tonic downloads its preprocessed copy (ibmGestureTrain/Test.tar.gz, 1077/264 samples)
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

from omegaconf import OmegaConf
from torchvision.datasets.utils import extract_archive

from arlif.runner.cli import run_cli
from arlif.data import events
from arlif.data.layout import check_split_sizes, no_empty_folders_left
from arlif.errors import DataError


def prepare(name: str, source: str, archive, data_dir: Path) -> None:
    """Download or extract, then count the samples of each split and compare with conf/dataset/<name>.yaml."""
    config = OmegaConf.load(REPO / "conf" / "dataset" / f"{name}.yaml")
    how = "delete the folder and run this script again"
    if name == "cifar10_dvs":
        if next((data_dir / "CIFAR10DVS").glob("*/*.aedat4"), None) is None:
            events.download_cifar10_dvs(data_dir)
        splits = events.cifar10_dvs_samples(data_dir, int(config.test_per_class))
        expected, layout, what = config.split_sizes, events.CIFAR10_DVS_LAYOUT, "CIFAR10-DVS"
    elif source == "ibm":
        if archive is not None:
            if not Path(archive).is_file():
                raise DataError(f"--archive {archive} does not exist")
            extract_archive(str(archive), str(data_dir))
        splits = events.ibm_gesture_samples(data_dir)
        expected, layout, what = config.split_sizes.ibm, events.IBM_GESTURE_LAYOUT, "DVS128 Gesture"
        how = "extract a fresh copy of DvsGesture.tar.gz with --archive"
    else:
        splits = events.tonic_gesture_samples(data_dir, download=True)
        expected, layout, what = config.split_sizes.tonic, events.TONIC_GESTURE_LAYOUT, "tonic DVSGesture"
    sizes = (len(splits[0]), len(splits[1]))
    check_split_sizes(what, data_dir, sizes, expected, layout, how)
    command = f"python train.py dataset={name} data_dir={data_dir}" + (" dataset.source=tonic" if source == "tonic" else "")
    print(f"{what} is ready in {data_dir}: {sizes[0]} train / {sizes[1]} test samples. Train with: {command}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", choices=["cifar10_dvs", "dvs_gesture"])
    parser.add_argument("--source", choices=["ibm", "tonic"], default="ibm",
                        help="dvs_gesture only: ibm (original archive, default) or tonic (its preprocessed copy)")
    parser.add_argument("--archive", type=Path,
                        help="dvs_gesture, source ibm: path of the downloaded DvsGesture.tar.gz")
    parser.add_argument("--data-dir", default=os.environ.get("ARLIF_DATA", "./data"),
                        help="folder that holds the datasets (default: $ARLIF_DATA or ./data)")
    args = parser.parse_args()
    data_dir = Path(args.data_dir).expanduser()

    def attempt() -> None:
        with no_empty_folders_left(data_dir):  # a failed download leaves no empty dataset folders
            prepare(args.dataset, args.source, args.archive, data_dir)

    run_cli(attempt)


if __name__ == "__main__":
    main()
