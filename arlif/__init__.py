"""arlif: reference implementation of the AR-LIF spiking neuron and its experiments.

Importing the package registers its networks in timm (`timm.create_model("arlif_<name>")`).
"""

__version__ = "0.1.0"

from arlif import models  # noqa: E402,F401  (registers the timm entry points)
