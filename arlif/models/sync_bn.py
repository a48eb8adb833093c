"""Sync batch norm for the spiking layers: per-time-step batch norm whose statistics span processes.

torch's `nn.SyncBatchNorm` does not know the sequence layout of `SeqBatchNorm2d`; the class
below combines the two, and `convert_sync_batchnorm` swaps it in for a DDP run (the runner
does so when several processes train; call it yourself in your own DDP loop).
"""

from __future__ import annotations

from torch import nn

from arlif.models.layers import SeqBatchNorm2d


class SeqSyncBatchNorm(SeqBatchNorm2d, nn.SyncBatchNorm):
    """SeqBatchNorm2d whose training statistics span every process's batch.

    The time-step handling is SeqBatchNorm2d's; its calls to the parent forward reach
    SyncBatchNorm's, next in the method order.  Same state dict as SeqBatchNorm2d.  Like torch's
    SyncBatchNorm it needs CUDA tensors when several processes train, and behaves as plain batch
    norm in one process or in eval mode.
    """


def convert_sync_batchnorm(model: nn.Module) -> nn.Module:
    """Replace every SeqBatchNorm2d of `model` by a SeqSyncBatchNorm with the same values.

    Call it before the optimizer is built: the new modules have new parameters.
    """
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if type(child) is SeqBatchNorm2d:
                sync = SeqSyncBatchNorm(child.num_features, child.bn_mode, T=child.T, alpha=child.alpha,
                                        v_threshold=child.v_threshold, eps=child.eps, momentum=child.momentum,
                                        affine=child.affine, track_running_stats=child.track_running_stats)
                sync.load_state_dict(child.state_dict())
                setattr(parent, name, sync)
    return model
