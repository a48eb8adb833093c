"""Result tables: a real two-neuron, three-seed multirun gives a table with exactly its summary.json numbers and
the seed-aware verdict; cells, statistics, published numbers compared like with like, and missing values; W&B
runs as a source."""

import csv
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from scipy.stats import t as student_t

from arlif.reports.paper import PUBLISHED, TABLE1, TABLE1_CODE, TABLE2
from arlif.reports.results import build_tables, support, to_markdown
from arlif.reports.runs import read_summaries, read_wandb_runs
from arlif.reports.verdict import SINGLE, compare
from helpers import script, tiny_run

ROOT = Path(__file__).resolve().parents[1]
# Quick-start scale: the quickstart preset on a small synthetic dataset, 2 epochs.
TINY_RUN = tiny_run("experiment=quickstart", "dataset.train_size=64", "dataset.test_size=32", "batch_size=16",
                    "trainer.epochs=2", "trainer.progress_bar=false")


def run(cmd, cwd):
    env = {**os.environ, "WANDB_MODE": "disabled"}
    out = subprocess.run([sys.executable, *cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


SEEDS = (2022, 2023, 2024)


@pytest.fixture(scope="module")
def tiny_tables(tmp_path_factory):
    """One real multirun, AR-LIF and TET's LIF under one recipe with 3 seeds each, and make_tables.py on it:
    (summaries by neuron, in seed order; the tables folder; what make_tables.py printed)."""
    tmp = tmp_path_factory.mktemp("tables")
    sweep = tmp / "multirun"
    run(["train.py", "-m", *TINY_RUN, "neuron=tet_lif,arlif", f"seed={','.join(map(str, SEEDS))}",
         f"hydra.sweep.dir={sweep}"], ROOT)
    summaries = {}
    for s in sorted(map(json.loads, map(Path.read_text, sweep.glob("*/summary.json"))), key=lambda s: s["seed"]):
        summaries.setdefault(s["neuron"], []).append(s)
    out = tmp / "tables"
    printed = script("make_tables", sweep, "--out", out)  # in this process: test_package runs a script's command line
    return summaries, out, printed


def test_multirun_table_equals_run_summaries(tiny_tables):
    """Real tiny trainings of AR-LIF and TET's LIF under one recipe: both neurons' rows, with exactly their
    summary.json numbers (mean ± std over the 3 seeds), in "Other runs" and side by side in the same-recipe
    table."""
    summaries, out, printed = tiny_tables
    assert {n: [s["seed"] for s in runs] for n, runs in summaries.items()} == {"tet_lif": list(SEEDS),
                                                                              "arlif": list(SEEDS)}
    rows = {r["neuron"]: r for r in read_csv(out / "other_runs.csv")}
    assert set(rows) == set(summaries)
    for neuron, row in rows.items():
        s = summaries[neuron][0]
        best = [r["test_acc_best"] for r in summaries[neuron]]
        assert (row["experiment"], row["dataset"], row["model"], int(row["T"])) == \
            (s["experiment"], s["dataset"], s["model"], s["T"])
        assert float(row["best_mean"]) == pytest.approx(statistics.fmean(best))
        assert float(row["best_std"]) == pytest.approx(statistics.stdev(best))
        final = [r["test_acc_final"] for r in summaries[neuron]]
        assert float(row["final_mean"]) == pytest.approx(statistics.fmean(final))
        assert (row["runs"], row["epochs"]) == ("3", "2/2")
        assert f"{statistics.fmean(best):.2f} ± {statistics.stdev(best):.2f}" in printed
    same = read_csv(out / "same_recipe.csv")
    assert [(r["recipe"], r["neuron"], r["method"]) for r in same] == [("quickstart", "arlif", "AR-LIF"),
                                                                     ("quickstart", "tet_lif", "TET's LIF")]
    assert same[0]["diff"] == same[0]["verdict"] == same[0]["arlif_paper"] == ""
    markdown = (out / "tables.md").read_text()
    assert markdown in printed and "### Same recipe" in markdown and "| quickstart | synthetic | quickcnn |" in markdown
    assert markdown.startswith("Numbers marked (copied) are copied")
    # no run belongs to a paper cell, so the paper tables are there with every cell empty
    for name, cells in (("table1.csv", TABLE1), ("table2.csv", TABLE2), ("table1_code.csv", TABLE1_CODE),
                        ("competitors_published.csv", PUBLISHED)):
        table = read_csv(out / name)
        assert len(table) == len(cells)
        assert all(r["best_mean"] == r["final_mean"] == r["delta_best"] == "" and r["runs"] == "0" for r in table)


def test_multirun_verdict_is_welchs_interval_of_the_seeds(tiny_tables):
    """The same-recipe row of the real runs: AR-LIF's seed mean minus TET's LIF's, its 95 % Welch interval and
    degrees of freedom, the verdict and the seeds that would resolve it, as printed by make_tables.py."""
    summaries, out, printed = tiny_tables
    row = read_csv(out / "same_recipe.csv")[1]
    best = {n: [s["test_acc_best"] for s in runs] for n, runs in summaries.items()}
    want = compare(best["arlif"], best["tet_lif"])
    assert float(row["diff"]) == pytest.approx(statistics.fmean(best["arlif"]) - statistics.fmean(best["tet_lif"]))
    assert row["verdict"] == want.verdict and want.verdict != SINGLE
    if want.df is not None:
        assert (float(row["ci_low"]), float(row["ci_high"]), float(row["df"])) == \
            pytest.approx((want.low, want.high, want.df))
        assert f"[{want.low:+.2f}, {want.high:+.2f}] | {want.df:.1f} | {want.verdict} |" in printed
    assert f"| {want.verdict} |" in printed and "### What the reruns support" in printed
    assert "Same recipe, 1 neuron-against-AR-LIF pairs" in printed


def test_verdict_agrees_with_a_hand_computed_welch_interval():
    """a = AR-LIF's seeds, b = a competitor's: means 96.1333 and 95.9, variances 0.023333 and 0.01, so
    se² = 0.023333/3 + 0.01/3 = 0.011111, df = se⁴ / ((0.023333/3)²/2 + (0.01/3)²/2) = 3.4483, and the interval
    0.23333 ± t(0.975, 3.4483)·0.10541 contains 0; at 4 seeds a side (se² = 0.0083333, df = 5.1724) it would not."""
    a, b = [96.1, 96.3, 96.0], [95.8, 95.9, 96.0]
    v = compare(a, b)
    se2 = 0.0233333333 / 3 + 0.01 / 3
    df = se2 ** 2 / ((0.0233333333 / 3) ** 2 / 2 + (0.01 / 3) ** 2 / 2)
    half = student_t.ppf(0.975, df) * se2 ** 0.5
    assert df == pytest.approx(3.4483, abs=1e-4) and half == pytest.approx(0.31208, abs=1e-4)
    assert (v.diff, v.df, v.low, v.high) == pytest.approx((0.233333, df, 0.233333 - half, 0.233333 + half), abs=1e-5)
    assert v.verdict == "not distinguishable" and v.seeds_to_resolve == 4
    se2_4 = (0.0233333333 + 0.01) / 4
    df_4 = se2_4 ** 2 / ((0.0233333333 / 4) ** 2 / 3 + (0.01 / 4) ** 2 / 3)
    assert df_4 == pytest.approx(5.1724, abs=1e-4) and student_t.ppf(0.975, df_4) * se2_4 ** 0.5 < 0.233333
    # equal variances 0.01, 3 seeds each: df = 4 exactly, 0.7 ± 2.7764·0.08165
    ahead = compare([96.5, 96.6, 96.7], [95.8, 95.9, 96.0])
    assert (ahead.df, ahead.low, ahead.high) == pytest.approx((4.0, 0.7 - 0.22669, 0.7 + 0.22669), abs=1e-4)
    assert ahead.verdict == "ahead" and ahead.seeds_to_resolve == 2
    behind = compare([95.8, 95.9, 96.0], [96.5, 96.6, 96.7])
    assert behind.verdict == "behind" and (behind.low, behind.high) == pytest.approx((-ahead.high, -ahead.low))
    single = compare([96.0], [95.0, 95.5])
    assert (single.diff, single.low, single.high, single.df, single.verdict, single.seeds_to_resolve) == \
        (pytest.approx(0.75), None, None, None, SINGLE, None)


def summary(neuron="arlif", T=4, seed=2022, best=96.0, final=95.5, done=400, dataset="cifar10", model="resnet18"):
    return {"experiment": f"paper-{dataset}-{model}-{neuron}-T{T}", "dataset": dataset, "model": model,
            "neuron": neuron, "T": T, "seed": seed, "test_acc_best": best, "test_acc_final": final,
            "epochs_completed": done, "epochs": 400, "source": "test"}


def test_cells_statistics_and_missing_values():
    runs = [summary(seed=2022, best=96.0, final=95.0), summary(seed=2023, best=96.4, final=95.5, done=390),
            summary(dataset="cifar100", neuron="lif_hard", best=70.0, final=69.0),
            summary(dataset="cifar100", best=80.0, final=79.0), {**summary(), "experiment": "my-test"}]
    table1, table2, *_, other = build_tables(runs)
    c10 = table1.rows[0]
    assert (c10["dataset"], c10["T"], c10["paper"], c10["runs"], c10["epochs"]) == \
        ("CIFAR-10", 4, 96.1, 2, "390-400/400")
    assert c10["best_mean"] == pytest.approx(96.2) and c10["best_std"] == pytest.approx(0.28284, abs=1e-4)
    assert c10["final_mean"] == pytest.approx(95.25) and c10["delta_best"] == pytest.approx(0.1)
    filled = [(r["dataset"], r["T"]) for r in table1.rows if r["runs"]]
    assert filled == [("CIFAR-10", 4), ("CIFAR-100", 4)]
    assert all(r["best_mean"] is None for r in table1.rows if not r["runs"])
    hard = next(r for r in table2.rows if r["dataset"] == "CIFAR-100" and r["neuron"] == "lif_hard")
    assert (hard["column"], hard["paper"], hard["best_mean"], hard["delta_best"]) == ("Hard", 73.4, 70.0,
                                                                                       pytest.approx(-3.4))
    # the CIFAR-100 T = 4 AR-LIF run fills Table 1's cell and Table 2's "Learnable"
    learnable = next(r for r in table2.rows if r["dataset"] == "CIFAR-100" and r["neuron"] == "arlif")
    assert (learnable["paper"], learnable["best_mean"]) == (77.8, 80.0)
    assert [r["experiment"] for r in other.rows] == ["my-test"]

    markdown = to_markdown(table1)
    assert "| CIFAR-10 | ResNet-18 | 4 | 96.10 | 96.20 ± 0.28 | 95.25 ± 0.35 | +0.10 | 2 | 390-400/400 |" in markdown
    assert "| CIFAR-10 | ResNet-18 | 6 | 96.30 | — | — | — | 0 | — |" in markdown
    assert " 0.00 " not in markdown


def published_run(preset_cell, seed, best):
    return {**summary(model=preset_cell.model, neuron=preset_cell.neuron, dataset=preset_cell.dataset, T=preset_cell.T,
                      seed=seed, best=best), "experiment": preset_cell.experiment}


def published_cell(method, dataset, T, recipe=""):
    return next(c for c in PUBLISHED if (c.method, c.dataset, c.T, c.recipe) == (method, dataset, T, recipe))


def test_competitor_rows_published_rerun_and_same_recipe_beside_arlif():
    tet4, tet6 = published_cell("tet", "cifar10", 4, "adam"), published_cell("tet", "cifar10", 6, "sgd_guess")
    runs = [summary(seed=2022, best=96.0), summary(seed=2023, best=96.4),  # AR-LIF's Table 1 cell
            summary(neuron="clif", seed=2022, best=95.0), summary(neuron="clif", seed=2023, best=95.4),  # same recipe
            published_run(tet4, 2022, 94.0),  # TET's cell, rerun once with TET's recipe (code's Adam)
            published_run(tet6, 2022, 94.2), published_run(tet6, 2023, 94.6)]  # twice with our SGD guess
    table1, _, code, competitors, same, other = build_tables(runs)
    assert table1.rows[0]["runs"] == 2 and all(r["runs"] == 0 for r in code.rows)
    rows = {(r["method"], r["dataset"], r["T"], r["recipe"]): r for r in competitors.rows}
    tet = rows[("TET", "CIFAR-10", 4, "adam")]
    assert (tet["model"], tet["published"], tet["statistic"], tet["best_mean"], tet["runs"], tet["arlif_paper"]) == \
        ("ResNet-19", 94.44, "mean of 3 seeds", 94.0, 1, 96.1)
    assert tet["delta_best"] == pytest.approx(-0.44) and "TET paper" in tet["source"] and "TIT" in tet["source"]
    # one run beside a 3-seed mean: shown, marked not comparable; two seeds: a seed mean, like with like
    assert tet["comparison"].startswith("not comparable") and "one run" in tet["comparison"]
    assert rows[("TET", "CIFAR-10", 6, "sgd_guess")]["comparison"].startswith("like with like")
    assert rows[("TET", "CIFAR-10", 4, "sgd_guess")]["runs"] == 0  # each recipe of the number is a row of its own
    assert all(r["runs"] == 0 and r["comparison"] == "" for r in competitors.rows
               if r is not tet and r is not rows[("TET", "CIFAR-10", 6, "sgd_guess")])
    markdown = to_markdown(competitors)
    assert "| (-0.44, not comparable) |" in markdown and "| -0.10 |" in markdown  # 94.40 − 94.50, like with like
    assert [(r["neuron"], r["runs"], r["arlif_paper"]) for r in same.rows] == [("arlif", 2, 96.1), ("clif", 2, 96.1)]
    clif = same.rows[1]
    assert clif["best_mean"] == pytest.approx(95.2) and clif["diff"] == pytest.approx(1.0)
    want = compare([96.0, 96.4], [95.0, 95.4])
    assert (clif["ci_low"], clif["ci_high"], clif["df"], clif["verdict"]) == \
        (pytest.approx(want.low), pytest.approx(want.high), pytest.approx(2.0), want.verdict)
    assert same.rows[0]["recipe"] == "paper-cifar10-resnet18-<neuron>-T4"
    assert [r["experiment"] for r in other.rows] == ["paper-cifar10-resnet18-clif-T4"]  # the TET runs have cells
    markdown = to_markdown(same)
    assert "| Δ AR-LIF − neuron, best epoch | 95 % interval (Welch) | df |" in markdown
    assert "| clif | CLIF | 95.20 ± 0.28 |" in markdown and f"| +1.00 | [{want.low:+.2f}, {want.high:+.2f}] | 2.0 |" \
        in markdown
    assert "published (copied)" in to_markdown(competitors)
    words = support(same, competitors)
    assert "Same recipe, 1 neuron-against-AR-LIF pairs" in words and "2 reruns beside a competitor's number, 1 " \
        "compared like with like and 1 shown but not comparable" in words


@pytest.mark.parametrize("method,dataset,T,runs,like", [
    ("psn", "cifar10_dvs", 4, 1, True),  # best epoch of one run: our best epoch, even of one run
    ("clif", "cifar10", 6, 3, False),  # a released checkpoint: never
    ("glif", "cifar10", 2, 3, False),  # statistic not stated: never
])
def test_published_numbers_are_compared_only_with_their_own_statistic(method, dataset, T, runs, like):
    cell = published_cell(method, dataset, T)
    row = next(r for r in build_tables([published_run(cell, 2022 + i, 90.0 + i) for i in range(runs)])[3].rows
               if r["preset"] == cell.preset)
    assert row["runs"] == runs and row["comparison"].startswith("like with like" if like else "not comparable")
    assert ("not comparable)" in to_markdown(SimpleNamespace(title="", columns=["delta_best", "comparison"],
                                                             rows=[row]))) is not like


def write_launches(tmp_path, launches):
    """Run folders {folder: (seed, overrides)} of the Table 1 CIFAR-10 cell: summary.json and .hydra/overrides.yaml."""
    for folder, (seed, overrides) in launches.items():
        (tmp_path / folder / ".hydra").mkdir(parents=True)
        (tmp_path / folder / "summary.json").write_text(json.dumps(summary(seed=seed)))
        (tmp_path / folder / ".hydra" / "overrides.yaml").write_text(
            "".join(f"- {o}\n" for o in ["experiment=table1/cifar10_resnet18_t4", *overrides]))


def test_a_key_field_chosen_on_the_command_line_is_no_variant(tmp_path):
    """`neuron=arlif` or `T=4` given explicitly (.hydra/overrides.yaml) names the same cell as the preset's own
    value; a key under them (neuron.decay) is a variant."""
    launches = {"a": (2022, []), "b": (2023, ["neuron=arlif", "T=4"]), "c": (2024, ["neuron.decay=0.3"])}
    write_launches(tmp_path, launches)
    table1, *_, other = build_tables(read_summaries([tmp_path]))
    assert table1.rows[0]["runs"] == 2 and [r["variant"] for r in other.rows] == ["neuron.decay=0.3"]


def test_runs_started_from_checkpoints_are_one_variant_whatever_the_paths(tmp_path):
    """TIT: each seed continues from its own T = 2 run (trainer.init_weights=<its folder>); those seeds are one
    group, apart from the runs trained from scratch."""
    launches = {"a": (2022, []), "b": (2022, ["trainer.init_weights=/runs/t2-seed2022"]),
                "c": (2023, ["trainer.init_weights=/runs/t2-seed2023"])}
    write_launches(tmp_path, launches)
    table1, *_, other = build_tables(read_summaries([tmp_path]))
    assert table1.rows[0]["runs"] == 1
    assert [(r["variant"], r["runs"]) for r in other.rows] == [("trainer.init_weights=<a checkpoint>", 2)]


def test_a_cell_takes_the_preset_runs_and_lists_other_launch_values_apart():
    """Runs of one cell launched with an extra override (here a 2-epoch try) are another group, under
    "Other runs" with their variant; the preset's own runs (no such override) fill the paper cell."""
    runs = [{**summary(seed=2022, best=96.0), "overrides": {}}, {**summary(seed=2023, best=96.4), "overrides": {}},
            {**summary(seed=2022, best=40.0, done=2), "overrides": {"trainer.epochs": "2"}}]
    table1, *_, other = build_tables(runs)
    assert table1.rows[0]["runs"] == 2 and table1.rows[0]["best_mean"] == pytest.approx(96.2)
    assert [(r["variant"], r["runs"], r["best_mean"]) for r in other.rows] == [("trainer.epochs=2", 1, 40.0)]
    assert "| trainer.epochs=2 |" in to_markdown(other)


def test_repeated_seed_is_counted_with_a_warning(caplog):
    table1 = build_tables([summary(best=96.0), summary(best=96.2)])[0]
    assert table1.rows[0]["runs"] == 2
    assert "2 runs with seed 2022" in caplog.text


def test_reads_run_folders_and_skips_unfinished(tmp_path, caplog):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "summary.json").write_text(json.dumps(summary()))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "summary.json").write_text(json.dumps({"experiment": "x"}))
    runs = read_summaries([tmp_path])
    assert [r["source"] for r in runs] == [str(tmp_path / "a" / "summary.json")]
    assert "lacks" in caplog.text


def test_wandb_runs_by_group():
    class Api:
        def runs(self, path, filters):
            self.query = (path, filters)
            return [SimpleNamespace(id="abc", summary=summary()), SimpleNamespace(id="def", summary={"_step": 3})]

    api = Api()
    runs = read_wandb_runs("me/arlif", ["paper-cifar10-resnet18-arlif-T4"], api=api)
    assert api.query == ("me/arlif", {"group": {"$in": ["paper-cifar10-resnet18-arlif-T4"]}})
    assert [r["source"] for r in runs] == ["wandb:me/arlif/abc"] and runs[0]["test_acc_best"] == 96.0


def test_no_input_is_a_clear_error(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_tables.py"), str(tmp_path / "nothing")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "does not exist" in out.stderr and "Traceback" not in out.stderr
