"""The spike math every neuron and every kernel shares, below both.

`surrogate` (the spike function: Heaviside forward, a surrogate backward) and `dynamics`
(the AR-LIF family's `NeuronSpec`, its readable reference loop and the reset codes).  This
package imports neither `arlif.neurons` nor `arlif.kernels`, so a kernel can import the spec
without running the neurons' package face.
"""
