"""arlif: reference implementation of the AR-LIF spiking neuron and its experiments.

Three layers (docs/architecture.md): the library (`neurons`, `kernels`, `models`, `data`,
`loss`, `instruments`), the runner (`arlif.runner`: a composed config to a run folder) and
the readers of run folders (`arlif.reports`, `arlif.search`).  Importing the package is cheap:
the networks are registered in timm as `arlif_<name>` when timm itself is imported
(`arlif.timm_models`).
"""

__version__ = "0.1.0"

from arlif import timm_models  # noqa: E402

timm_models.install()
