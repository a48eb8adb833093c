"""Which engines can run in this process: Triton installed, Triton on the CPU through its interpreter; and
`constant_to_dynamo`, which marks a dispatch function as a constant without importing Dynamo."""

from __future__ import annotations

import functools
import importlib.util
import os


@functools.cache
def triton_installed() -> bool:
    return importlib.util.find_spec("triton") is not None


def triton_interpreting() -> bool:
    """True when Triton runs kernels on the CPU through its interpreter (TRITON_INTERPRET=1)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def constant_to_dynamo(fn):
    """`torch.compiler.assume_constant_result(fn)`, without importing Dynamo (about 2 s, on every start of
    train.py, also in the processes that never compile): that decorator only sets this attribute, which Dynamo
    reads when it traces a call (tests/test_kernels.py checks that the two still agree)."""
    fn._dynamo_marked_constant = True
    return fn
