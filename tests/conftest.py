"""Session-wide test setup."""

import os

import torch

# Without CUDA the Triton kernel is tested through Triton's CPU interpreter.  Triton reads
# this variable once, when it is first imported (which other test modules' imports can
# trigger during collection), so it is set here, before any test module is collected.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
