"""The paper's published numbers, its competitors' published numbers, and the run that reproduces each.

A result cell is one (dataset, model, neuron, T) trained with the published recipe of its
dataset (conf/recipe/), whose runs are named `experiment_name(...)` (the
presets set `experiment.name` to the same pattern, so that each cell is one W&B group).
Accuracies are top-1 test accuracy in percent at the best test epoch, as published.

`TABLE1_CODE` holds AR-LIF's CIFAR10-DVS cells as the authors' released code ran them
(conf/experiment/table1_code/).  `PUBLISHED` holds the competitors' numbers (Table 1's rows
with public code, and the numbers their own papers or repositories give), each with its
source and the preset that reruns it with that paper's recipe (conf/experiment/compare/).
`SAME_RECIPE_NEURONS` are the competitor neurons that conf/table/compare_same_recipe.yaml
trains in every Table 1 cell in AR-LIF's place.  Every number here is copied, none measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

# Display names, in the paper's order.
DATASETS = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "tiny_imagenet": "Tiny-ImageNet",
            "cifar10_dvs": "CIFAR10-DVS", "dvs_gesture": "DVS-Gesture"}
MODELS = {"resnet18": "ResNet-18", "vgg13": "VGG-13", "vggsnn": "VGGSNN", "vgg11": "VGG-11", "resnet19": "ResNet-19",
          "resnet18_glif": "ResNet-18 (GLIF's)"}
# Table 2's columns: the neuron each one trains.
ABLATIONS = {"lif_hard": "Hard", "lif_soft": "Soft", "arlif_fixed_alpha": "α = 1", "arlif_fixed_threshold": "Vth = 1",
             "arlif_fixed_both": "Both", "arlif": "Learnable"}


# The competitors whose published numbers `PUBLISHED` holds, by the method key of their presets.
METHODS = {"tet": "TET", "glif": "GLIF", "clif": "CLIF", "tebn": "TEBN", "psn": "PSN"}
# The neurons the same-recipe grid swaps in for AR-LIF, with the method each comes from.
SAME_RECIPE_NEURONS = {"tet_lif": "TET's LIF", "clif": "CLIF", "plif": "PLIF", "glif": "GLIF", "psn": "PSN",
                       "masked_psn": "masked PSN", "sliding_psn": "sliding PSN"}


def experiment_name(dataset: str, model: str, neuron: str, T: int, prefix: str = "paper") -> str:
    """Run name (and W&B group) of a published-recipe run; the presets' `experiment.name`.  `prefix` is
    "paper" for the paper's recipes (conf/experiment/table1, table2), "code" for the authors' released
    CIFAR10-DVS code (table1_code) and "published-<method>" for a competitor's own recipe (compare/)."""
    return f"{prefix}-{dataset}-{model}-{neuron}-T{T}"


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
    prefix: str = "paper"

    @property
    def experiment(self) -> str:
        return experiment_name(self.dataset, self.model, self.neuron, self.T, self.prefix)


# What a copied number is: its statistic (`PublishedCell.statistic`), as the competitors' sources give it.
STATISTICS = {"seed_mean": "mean of {n} seeds", "best_epoch": "best epoch of one run",
              "checkpoint": "released checkpoint", "not_stated": "not stated"}


@dataclass(frozen=True)
class PublishedCell:
    """A competitor's published accuracy (None where it was not copied; `source` says why), what statistic it is
    (a STATISTICS key; `seeds` for a seed mean), and the preset that reruns it with that paper's own recipe,
    conf/experiment/compare/published/<method>_<dataset>_<model>_t<T>[_<recipe>].  `recipe` names one of several
    presets for one published number, where the sources leave the recipe unknown or contradict each other."""

    method: str
    dataset: str
    model: str
    neuron: str
    T: int
    acc: Optional[float]
    source: str
    statistic: str = "not_stated"
    seeds: Optional[int] = None
    recipe: str = ""

    @property
    def preset(self) -> str:
        return f"compare/published/{self.method}_{self.dataset}_{self.model}_t{self.T}{self.suffix}"

    @property
    def suffix(self) -> str:
        return f"_{self.recipe}" if self.recipe else ""

    @property
    def experiment(self) -> str:
        return experiment_name(self.dataset, self.model, self.neuron, self.T, f"published-{self.method}{self.suffix}")

    @property
    def statistic_text(self) -> str:
        return STATISTICS[self.statistic].format(n=self.seeds)


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


def _table1_code() -> list[Cell]:
    """AR-LIF's CIFAR10-DVS cells as produced: the authors' PSN-based code (published-code facts, section 8)."""
    return [Cell("table1_code", "cifar10_dvs", "vggsnn", "arlif_psn_code", T, acc,
                 f"table1_code/cifar10_dvs_vggsnn_t{T}", prefix="code")
            for T, acc in {4: 86.9, 8: 87.6, 16: 87.9}.items()]


AR_LIF_TABLE1 = "AR-LIF paper, Table 1"
TET_PAPER = ("TET paper (Deng et al., ICLR 2022), Sec. 5, CIFAR comparison: ResNet-19, mean of 3 runs \"with TET and "
             "TIT\" (its std not copied); the means as quoted in AR-LIF's Table 1, row TET [7]")
GLIF_PAPER = ("GLIF paper (Yao et al., NeurIPS 2022), ResNet-18 row, as quoted in AR-LIF's Table 1, which cites it "
              "there as [12], Guo et al. (ECCV 2022); its statistic is not stated (GLIF's README lists {readme} for "
              "its released checkpoints)")
CLIF_README = "CLIF repository README (HuuYuLong/Complementary-LIF): its pre-trained ResNet-18, T = 6"
PSN_LOGS = ("Parallel-Spiking-Neuron repository (fangwei123456), cifar10dvs/T{T}_opt_SGD0.1_tau_0.25_method_PSN_b_32"
            "_TET_2gpu.log, the last 'Best Test acc' of its one run")
# The presets of one published number whose recipe the sources leave open (docs/reproduce.md, "Comparing neurons"):
# TET's CIFAR optimiser is not in its paper or code; TEBN's CIFAR10-DVS recipe differs between TEBN's own main.py
# and the PSN repository's copy, and neither says whether the TET loss was used.
TET_RECIPES = ("adam", "sgd_guess")
TEBN_RECIPES = ("copy", "copy_tet", "main", "main_tet")


def _published() -> list[PublishedCell]:
    rows = [
        ("tet", "cifar10", "resnet19", "tet_lif", {2: 94.16, 4: 94.44, 6: 94.50}, TET_PAPER, ("seed_mean", 3),
         TET_RECIPES),
        ("tet", "cifar100", "resnet19", "tet_lif", {2: None, 4: None, 6: None},
         "not copied: TET's paper reports ResNet-19 on CIFAR-100 in a table that could not be read where this table "
         "was written, and AR-LIF's Table 1 does not list it; the T follow TET's CIFAR-10 row", ("seed_mean", 3),
         TET_RECIPES),
        ("glif", "cifar10", "resnet18_glif", "glif", {2: 94.15, 4: 94.67, 6: 94.88},
         GLIF_PAPER.replace("{readme}", "94.19 / 94.75 / 95.09"), ("not_stated", None), ("",)),
        ("glif", "cifar100", "resnet18_glif", "glif", {6: 77.28},
         f"{AR_LIF_TABLE1}, row GLIF [19] (Yao et al., NeurIPS 2022); its statistic is not stated (GLIF's README "
         "lists 77.49 for its released checkpoint)", ("not_stated", None), ("",)),
        ("clif", "cifar10", "resnet18", "clif", {6: 95.41}, CLIF_README, ("checkpoint", None), ("",)),
        ("clif", "cifar100", "resnet18", "clif", {6: 78.36}, CLIF_README, ("checkpoint", None), ("",)),
        ("clif", "tiny_imagenet", "vgg13", "clif", {4: 63.16, 6: 64.13},
         f"{AR_LIF_TABLE1}, row CLIF [22]; not checked against CLIF's paper", ("not_stated", None), ("",)),
        ("tebn", "cifar10_dvs", "vggsnn", "tet_lif", {10: 84.9},
         f"{AR_LIF_TABLE1}, row TEBN [8] (Duan et al., NeurIPS 2022); not checked against TEBN's paper",
         ("not_stated", None), TEBN_RECIPES),
        ("psn", "cifar10_dvs", "vggsnn", "sliding_psn", {4: 82.3, 8: 85.3, 10: 85.9}, PSN_LOGS, ("best_epoch", 1),
         ("",)),
    ]
    return [PublishedCell(method, d, m, neuron, T, acc, source.format(T=T), statistic, seeds, recipe)
            for method, d, m, neuron, accs, source, (statistic, seeds), recipes in rows
            for T, acc in accs.items() for recipe in recipes]


TABLE1 = _table1()
TABLE2 = _table2()
TABLE1_CODE = _table1_code()
PUBLISHED = _published()


@dataclass(frozen=True)
class EnergyRow:
    """One row of the paper's Table 3 (per test sample; FLOPs, MACs, ACs in millions, energy in µJ).  The
    DVS-Gesture row is at T = 20 as the table says; the paper's text says its Gesture energy ran at T = 4."""

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
