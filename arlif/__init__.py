"""arlif: reference implementation of the AR-LIF spiking neuron and its experiments."""

__version__ = "0.1.0"
