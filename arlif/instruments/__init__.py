"""Instruments that measure a model while it runs: firing rates per layer, synaptic operations and energy."""
