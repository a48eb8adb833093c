"""Synaptic operations and inference energy of a spiking network (the paper's Table 3).

The method is the Spike-driven Transformer's (Yao et al., NeurIPS 2023): the first layer
gets the real-valued input and performs multiply-accumulates (MACs); every later synaptic
layer l is driven by spikes and performs accumulates ACs_l = fr_l · T · FLOPs_l, where
fr_l is the measured firing rate of its input; E = 4.6 pJ · MACs + 0.9 pJ · ACs (45 nm
CMOS, Horowitz 2014).  `SynapticOpCounter` measures, with forward hooks on every Conv
and Linear layer, over all the data it sees:

- FLOPs_l (`ops_per_step`): multiply-accumulates per sample per time step, from the
  layer's real input and output shapes with torch's FLOP formulas;
- steps_l: time steps the layer runs per sample (T; 1 for a direct-encoded first conv,
  which sees the static image once);
- fr_l (`input_rate`): the mean of its input, i.e. the fraction of input neurons spiking
  per time step.  Average pooling keeps the mean, so a layer after a pooling layer gets
  the firing rate of the neurons before the pooling, as the method's fr_(l-1).

Then MACs = steps_1 · FLOPs_1 and ACs = Σ_(l>1) fr_l · steps_l · FLOPs_l, per sample.  BN
(foldable into the conv weights at inference), pooling and the neurons are not counted,
as in the method.  `flops` is 2 · Σ_l FLOPs_l: one time step of the equivalent ANN with
multiply and add counted apart (torch's convention, and the paper's FLOPs column).
Note: the published Table 3 appears to also count the layers after average pooling as MACs,
once per sample, so its MACs of the VGG rows are higher (see docs/reproduce.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import conv_flop_count

from arlif.models import count_parameters

E_MAC_PJ = 4.6
E_AC_PJ = 0.9
SYNAPTIC_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


@dataclass
class LayerOps:
    """One synaptic layer's per-sample counts (see the module docstring)."""

    name: str
    ops_per_step: float
    steps: float
    input_rate: float
    macs: float
    acs: float


@dataclass
class EnergyReport:
    """Per-sample totals of a network; energy in µJ."""

    params: int
    flops: float
    macs: float
    acs: float
    time_steps: int
    samples: int
    layers: list[LayerOps]

    @property
    def energy_uj(self) -> float:
        return (E_MAC_PJ * self.macs + E_AC_PJ * self.acs) * 1e-6

    def as_dict(self) -> dict:
        """Plain JSON-ready dict, with `energy_uJ` added."""
        out = asdict(self)
        out["energy_uJ"] = self.energy_uj
        return out


def _call_ops(module: nn.Module, x: Tensor, out: Tensor) -> tuple[int, int]:
    """(rows, multiply-accumulates) of one call: rows are the samples·steps it processed."""
    if isinstance(module, nn.Linear):
        rows = x.numel() // module.in_features
        return rows, rows * module.in_features * module.out_features
    return x.shape[0], conv_flop_count(list(x.shape), list(module.weight.shape), list(out.shape)) // 2


class _Tally:
    """Running sums of one layer (the input sum stays on the device: no host sync per call)."""

    def __init__(self):
        self.rows = 0
        self.ops = 0
        self.input_sum = 0.0
        self.elements = 0

    def add(self, module: nn.Module, x: Tensor, out: Tensor) -> None:
        rows, ops = _call_ops(module, x, out)
        self.rows += rows
        self.ops += ops
        self.input_sum = self.input_sum + x.sum(dtype=torch.float64)
        self.elements += x.numel()


class SynapticOpCounter:
    """`with SynapticOpCounter(model) as ops: <evaluate model>` then `ops.report()`.

    The model is called as the project's networks are: `model(x, T=None)` with x
    [T, B, ...] or [B, ...] (then T is given); a pre-hook on the model counts the samples.
    """

    def __init__(self, model: nn.Module):
        self.model = model
        self.layers = [(n, m) for n, m in model.named_modules() if isinstance(m, SYNAPTIC_LAYERS)]
        self._handles = []
        self.reset()

    def reset(self) -> None:
        self._tallies = {name: _Tally() for name, _ in self.layers}
        self._order: list[str] = []  # layers in the order of their first call
        self.samples = 0
        self.time_steps: set[int] = set()

    def _count_input(self, _model, args, kwargs) -> None:
        x = args[0]
        T = x.shape[0] if x.dim() == 5 else kwargs.get("T", args[1] if len(args) > 1 else None)
        if T is None:
            return  # the model itself rejects a static input without T
        self.samples += x.shape[1] if x.dim() == 5 else x.shape[0]
        self.time_steps.add(int(T))

    def _hook(self, name: str):
        def record(module, inputs, out):
            with torch.no_grad():
                if name not in self._order:
                    self._order.append(name)
                self._tallies[name].add(module, inputs[0].detach(), out)
        return record

    def __enter__(self) -> "SynapticOpCounter":
        self._handles = [self.model.register_forward_pre_hook(self._count_input, with_kwargs=True)]
        self._handles += [m.register_forward_hook(self._hook(n)) for n, m in self.layers]
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def report(self) -> EnergyReport:
        """Per-sample Params, FLOPs, MACs, ACs and the layer breakdown of everything seen."""
        if not self.samples:
            raise RuntimeError("SynapticOpCounter saw no input; run the model inside the `with` block")
        if len(self.time_steps) != 1:
            raise RuntimeError(f"inputs used different numbers of time steps {sorted(self.time_steps)}")
        layers = []
        for i, name in enumerate(self._order):
            t = self._tallies[name]
            ops, steps = t.ops / t.rows, t.rows / self.samples
            rate = float(t.input_sum) / t.elements
            first = i == 0  # the layer that gets the network's input
            layers.append(LayerOps(name, ops, steps, rate, macs=steps * ops if first else 0.0,
                                   acs=0.0 if first else rate * steps * ops))
        return EnergyReport(
            params=count_parameters(self.model),
            flops=2.0 * sum(layer.ops_per_step for layer in layers),
            macs=sum(layer.macs for layer in layers),
            acs=sum(layer.acs for layer in layers),
            time_steps=next(iter(self.time_steps)),
            samples=self.samples,
            layers=layers,
        )
