"""Entry-point error handling: one message, no traceback, non-zero exit."""

import pytest
from torch.utils.data import DataLoader, Dataset

from arlif.runner.cli import run_cli
from arlif.errors import DataError


class Broken(Dataset):
    def __len__(self):
        return 2

    def __getitem__(self, i):
        raise DataError("sample file /data/x.aedat4 is corrupt: delete it and download again")


@pytest.mark.parametrize("workers", [0, 1])
def test_data_error_prints_one_message(capsys, workers):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: next(iter(DataLoader(Broken(), num_workers=workers))))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err == "error: sample file /data/x.aedat4 is corrupt: delete it and download again\n"
