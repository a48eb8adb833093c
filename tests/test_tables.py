"""Result tables: a real two-neuron multirun gives a table with exactly its summary.json numbers; cells,
statistics and missing values; W&B runs as a source."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from arlif.reports.paper import PUBLISHED, TABLE1, TABLE1_CODE, TABLE2
from arlif.reports.results import build_tables, to_markdown
from arlif.reports.runs import read_summaries, read_wandb_runs
from helpers import tiny_run

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


def test_multirun_table_equals_run_summaries(tmp_path):
    """Real tiny trainings of AR-LIF and TET's LIF under one recipe: both neurons' rows, with exactly their
    summary.json numbers, in "Other runs" and side by side in the same-recipe table."""
    sweep = tmp_path / "multirun"
    run(["train.py", "-m", *TINY_RUN, "neuron=tet_lif,arlif", "seed=2022", f"hydra.sweep.dir={sweep}"], ROOT)
    summaries = {s["neuron"]: s for s in map(json.loads, map(Path.read_text, sweep.glob("*/summary.json")))}
    assert set(summaries) == {"tet_lif", "arlif"}

    out = tmp_path / "tables"
    printed = run([str(ROOT / "scripts" / "make_tables.py"), str(sweep), "--out", str(out)], tmp_path)
    rows = {r["neuron"]: r for r in read_csv(out / "other_runs.csv")}
    assert set(rows) == set(summaries)
    for neuron, row in rows.items():
        s = summaries[neuron]
        assert (row["experiment"], row["dataset"], row["model"], int(row["T"])) == \
            (s["experiment"], s["dataset"], s["model"], s["T"])
        assert float(row["best_mean"]) == s["test_acc_best"]
        assert float(row["final_mean"]) == s["test_acc_final"]
        assert (row["best_std"], row["runs"], row["epochs"]) == ("", "1", "2/2")
        assert f"{s['test_acc_best']:.2f}" in printed
    same = read_csv(out / "same_recipe.csv")
    assert [(r["recipe"], r["neuron"], r["method"]) for r in same] == [("quickstart", "arlif", "AR-LIF"),
                                                                     ("quickstart", "tet_lif", "TET's LIF")]
    assert [float(r["best_mean"]) for r in same] == [summaries[n]["test_acc_best"] for n in ("arlif", "tet_lif")]
    assert float(same[1]["vs_arlif"]) == pytest.approx(summaries["tet_lif"]["test_acc_best"]
                                                       - summaries["arlif"]["test_acc_best"])
    assert same[0]["vs_arlif"] == "" and same[0]["arlif_paper"] == ""
    markdown = (out / "tables.md").read_text()
    assert markdown in printed and "### Same recipe" in markdown and "| quickstart | synthetic | quickcnn |" in markdown
    assert markdown.startswith("Numbers marked (copied) are copied")
    # no run belongs to a paper cell, so the paper tables are there with every cell empty
    for name, cells in (("table1.csv", TABLE1), ("table2.csv", TABLE2), ("table1_code.csv", TABLE1_CODE),
                        ("competitors_published.csv", PUBLISHED)):
        table = read_csv(out / name)
        assert len(table) == len(cells)
        assert all(r["best_mean"] == r["final_mean"] == r["delta_best"] == "" and r["runs"] == "0" for r in table)


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


def test_competitor_rows_published_rerun_and_same_recipe_beside_arlif():
    runs = [summary(seed=2022, best=96.0), summary(seed=2023, best=96.4),  # AR-LIF's Table 1 cell
            summary(neuron="clif", seed=2022, best=95.0), summary(neuron="clif", seed=2023, best=95.4),  # same recipe
            {**summary(model="resnet19", neuron="tet_lif", best=94.0), "experiment":
             "published-tet-cifar10-resnet19-tet_lif-T4"}]  # TET's cell, rerun with TET's recipe
    table1, _, code, competitors, same, other = build_tables(runs)
    assert table1.rows[0]["runs"] == 2 and all(r["runs"] == 0 for r in code.rows)
    tet = next(r for r in competitors.rows if (r["method"], r["dataset"], r["T"]) == ("TET", "CIFAR-10", 4))
    assert (tet["model"], tet["published"], tet["best_mean"], tet["runs"], tet["arlif_paper"]) == \
        ("ResNet-19", 94.44, 94.0, 1, 96.1)
    assert tet["delta_best"] == pytest.approx(-0.44) and "Table 1" in tet["source"]
    assert all(r["runs"] == 0 for r in competitors.rows if r is not tet)
    assert [(r["neuron"], r["runs"], r["arlif_paper"]) for r in same.rows] == [("arlif", 2, 96.1), ("clif", 2, 96.1)]
    assert same.rows[1]["best_mean"] == pytest.approx(95.2) and same.rows[1]["vs_arlif"] == pytest.approx(-1.0)
    assert same.rows[0]["recipe"] == "paper-cifar10-resnet18-<neuron>-T4"
    assert [r["experiment"] for r in other.rows] == ["paper-cifar10-resnet18-clif-T4"]  # the TET run has its cell
    markdown = to_markdown(same)
    assert "| Δ best − AR-LIF's (ours) |" in markdown and "| clif | CLIF | 95.20 ± 0.28 |" in markdown
    assert "published (copied)" in to_markdown(competitors)


def test_a_key_field_chosen_on_the_command_line_is_no_variant(tmp_path):
    """`neuron=arlif` or `T=4` given explicitly (.hydra/overrides.yaml) names the same cell as the preset's own
    value; a key under them (neuron.decay) is a variant."""
    launches = {"a": (2022, []), "b": (2023, ["neuron=arlif", "T=4"]), "c": (2024, ["neuron.decay=0.3"])}
    for folder, (seed, overrides) in launches.items():
        (tmp_path / folder / ".hydra").mkdir(parents=True)
        (tmp_path / folder / "summary.json").write_text(json.dumps(summary(seed=seed)))
        (tmp_path / folder / ".hydra" / "overrides.yaml").write_text(
            "".join(f"- {o}\n" for o in ["experiment=table1/cifar10_resnet18_t4", *overrides]))
    table1, *_, other = build_tables(read_summaries([tmp_path]))
    assert table1.rows[0]["runs"] == 2 and [r["variant"] for r in other.rows] == ["neuron.decay=0.3"]


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
