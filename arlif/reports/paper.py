"""The paper's published numbers and the run that reproduces each of them.

A result cell is one (dataset, model, neuron, T) trained with the published recipe of its
dataset (conf/experiment/recipe/), whose runs are named `experiment_name(...)` (the
presets set `experiment.name` to the same pattern, so that each cell is one W&B group).
Accuracies are top-1 test accuracy in percent at the best test epoch, as published.
"""

from __future__ import annotations

from dataclasses import dataclass

# Display names, in the paper's order.
DATASETS = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "tiny_imagenet": "Tiny-ImageNet",
            "cifar10_dvs": "CIFAR10-DVS", "dvs_gesture": "DVS-Gesture"}
MODELS = {"resnet18": "ResNet-18", "vgg13": "VGG-13", "vggsnn": "VGGSNN", "vgg11": "VGG-11", "resnet19": "ResNet-19",
          "resnet18_glif": "ResNet-18 (GLIF's)"}
# Table 2's columns: the neuron each one trains.
ABLATIONS = {"lif_hard": "Hard", "lif_soft": "Soft", "arlif_fixed_alpha": "α = 1", "arlif_fixed_threshold": "Vth = 1",
             "arlif_fixed_both": "Both", "arlif": "Learnable"}


def experiment_name(dataset: str, model: str, neuron: str, T: int) -> str:
    """Run name (and W&B group) of a published-recipe run; the presets' `experiment.name`."""
    return f"paper-{dataset}-{model}-{neuron}-T{T}"


@dataclass(frozen=True)
class Cell:
    """One published accuracy and the preset that trains it."""

    table: str
    dataset: str
    model: str
    neuron: str
    T: int
    acc: float
    preset: str

    @property
    def experiment(self) -> str:
        return experiment_name(self.dataset, self.model, self.neuron, self.T)


def _table1() -> list[Cell]:
    rows = [("cifar10", "resnet18", {4: 96.1, 6: 96.3, 8: 96.7}),
            ("cifar100", "resnet18", {4: 80.1, 6: 80.8, 8: 81.0}),
            ("tiny_imagenet", "vgg13", {4: 66.80, 6: 67.51}),
            ("tiny_imagenet", "vggsnn", {4: 68.75, 6: 68.93}),
            ("cifar10_dvs", "vggsnn", {4: 86.9, 8: 87.6, 16: 87.9}),
            ("dvs_gesture", "vgg11", {20: 98.61})]
    return [Cell("table1", d, m, "arlif", T, acc, f"table1/{d}_{m}_t{T}")
            for d, m, accs in rows for T, acc in accs.items()]


def _table2() -> list[Cell]:
    rows = [("cifar100", "resnet18", (73.4, 63.4, 77.0, 76.5, 76.1, 77.8)),
            ("cifar10_dvs", "vggsnn", (83.8, 84.1, 85.4, 84.6, 84.3, 85.7))]
    return [Cell("table2", d, m, neuron, 4, acc, f"table2/{d}_{m}")
            for d, m, accs in rows for neuron, acc in zip(ABLATIONS, accs)]


TABLE1 = _table1()
TABLE2 = _table2()


@dataclass(frozen=True)
class EnergyRow:
    """One row of the paper's Table 3 (per test sample; FLOPs, MACs, ACs in millions, energy in µJ)."""

    dataset: str
    model: str
    T: int
    params_m: float
    flops_m: float
    macs_m: float
    acs_m: float
    energy_uj: float


TABLE3 = [
    EnergyRow("cifar10", "resnet18", 4, 11.2, 1211.51, 1.77, 95.65, 94.22),
    EnergyRow("cifar100", "resnet18", 4, 11.2, 1211.60, 1.77, 96.72, 95.19),
    EnergyRow("tiny_imagenet", "vggsnn", 4, 10.9, 4847.11, 763.08, 209.56, 3698.80),
    EnergyRow("cifar10_dvs", "vggsnn", 4, 9.3, 2724.21, 428.09, 57.35, 2020.84),
    EnergyRow("dvs_gesture", "vgg11", 20, 9.5, 4872.13, 1078.11, 23.71, 4980.63),
]
