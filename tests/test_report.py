"""`sweeplab report`: the paper's published numbers mapped onto a sweep's trials (sweeplab.paper), the HTML page
and its Markdown twin (sweeplab.page, sweeplab.report), on a toy sweep and on smoke sweeps of every task."""
import base64
import dataclasses
import html
import io
import math
import random
import re
import statistics
from pathlib import Path

import pandas as pd
import pytest
import yaml
from PIL import Image as PILImage

from sweeplab import cli, paper as P, report
from sweeplab import task as T
from sweeplab.api import Paper, Published, register_task
from sweeplab.spec import load
from sweeplab.task import get_task
from tests.conftest import TOY, run_cli

SWEEPS = Path(__file__).parents[1] / "sweeps"
TOY_FIELDS = ["lr", "width", "sizes"]


def _trials(rows):
    return pd.DataFrame([{"status": "completed", "seed": 0, **r} for r in rows])


def test_each_published_number_gets_the_mean_and_spread_of_the_trials_that_measure_it():
    trials = _trials([
        {"trial_id": "a0", "lr": 0.05, "width": 4, "sizes": "1,2", "loss": 0.30},
        {"trial_id": "a1", "lr": 0.05, "width": 4, "sizes": "1,2", "loss": 0.36},
        {"trial_id": "a2", "lr": 0.05, "width": 4, "sizes": "1,2", "loss": 0.33},
        {"trial_id": "a3", "lr": 0.05, "width": 4, "sizes": "1,2", "loss": 0.01, "status": "failed"},
        {"trial_id": "b0", "lr": 0.01, "width": 8, "sizes": "3", "loss": 0.20},
        {"trial_id": "b1", "lr": 0.01, "width": 8, "sizes": "3", "loss": 0.24},
        {"trial_id": "c0", "lr": 0.01, "width": 4, "sizes": "1,2", "loss": float("nan")},
    ])
    evaluations = pd.DataFrame([{"trial_id": t, "size": s, "value": v} for t, s, v in (
        ("a0", 1, 1.0), ("a0", 2, 2.0), ("a0", 2, 4.0), ("a1", 2, 5.0), ("b0", 2, 7.0))])
    paper = Paper("Toy 2026", (
        Published("Table 1", "lr 0.05", "loss", 0.3, where={"lr": 0.05}),
        Published("Table 1", "best width", "loss", 0.2, where={"width": (4, 8)}, best="min"),
        Published("Table 2", "size 2", "value", 4.0, rows={"size": 2}, scale=10.0),
        Published("Table 2", "sizes 1,2", "loss", None, where={"sizes": [1, 2]}),
        Published("Table 2", "never run", "loss", 1.0, where={"lr": 9.0}),
        Published("Table 3", "on real data", "loss", 0.25, data="real"),
        Published("Table 3", "on other data", "loss", 0.25, data="other"),
    ), data=lambda cfg: "real" if cfg["width"] == 8 else "embedded")
    rows = {r["row"]: r for r in P.compare(paper, trials, evaluations, TOY_FIELDS)}

    repeats = [0.30, 0.36, 0.33]  # the failed trial and the trial without a loss are not measures
    assert rows["lr 0.05"]["sweep"] == pytest.approx(statistics.mean(repeats))
    assert rows["lr 0.05"]["spread"] == pytest.approx(statistics.stdev(repeats))
    assert rows["lr 0.05"]["difference"] == pytest.approx(statistics.mean(repeats) - 0.3)
    assert (rows["lr 0.05"]["n"], rows["lr 0.05"]["trials"], rows["lr 0.05"]["configurations"]) == \
        (3, ["a0", "a1", "a2"], 1)
    best = rows["best width"]  # the configuration whose mean is lowest, its repeats only
    assert (best["trials"], best["configurations"]) == (["b0", "b1"], 2)
    assert best["sweep"] == pytest.approx(0.22) and best["spread"] == pytest.approx(statistics.stdev([0.2, 0.24]))
    size2 = rows["size 2"]  # per trial the mean over its rows of size 2, then over trials; scaled
    assert size2["trials"] == ["a0", "a1", "b0"]
    assert size2["sweep"] == pytest.approx(10 * statistics.mean([3.0, 5.0, 7.0]))
    assert rows["sizes 1,2"]["trials"] == ["a0", "a1", "a2"]  # a tuple field, written as a list
    assert rows["sizes 1,2"]["difference"] is None and rows["sizes 1,2"]["published"] is None
    assert rows["never run"]["n"] == 0 and rows["never run"]["sweep"] is None
    assert rows["never run"]["condition"] == "lr = 9.0"
    # a trial on one of the paper's datasets measures only that dataset's rows; one on other data measures both
    assert rows["on real data"]["trials"] == ["b0", "b1"]  # trials on the paper's own data, when there are some
    assert rows["on real data"]["sweep_data"] == "real"
    assert rows["on other data"]["trials"] == ["a0", "a1", "a2"]
    assert rows["on other data"]["sweep_data"] == "embedded"


@pytest.mark.parametrize("published, problem", [
    (Published("T", "r", "loss", 1.0, where={"nope": 1}), "unknown config fields ['nope']"),
    (Published("T", "r", "accuracy", 1.0), "metric 'accuracy' is not one of"),
    (Published("T", "r", "value", 1.0, rows={"colour": "red"}), "unknown evaluation columns ['colour']"),
    (Published("T", "r", "loss", 1.0, best="highest"), "best 'highest'"),
])
def test_a_paper_naming_what_the_task_lacks_is_refused_at_registration(published, problem):
    bad = dataclasses.replace(TOY, name="toy-bad-paper", paper=Paper("Toy", (published,)))
    with pytest.raises(ValueError, match=re.escape(problem)):
        register_task(bad)
    assert "toy-bad-paper" not in T._REGISTRY


@pytest.mark.parametrize("mode", ["max", "min"])
def test_the_pareto_front_is_every_trial_no_other_beats_on_both_cost_and_quality(mode):
    rng = random.Random(3)
    points = pd.DataFrame({"gmacs": [rng.choice([0.5, 1.0, 2.0, 4.0]) for _ in range(60)],
                           "q": [rng.random() for _ in range(60)]})
    better = (lambda a, b: a > b) if mode == "max" else (lambda a, b: a < b)
    not_worse = (lambda a, b: a >= b) if mode == "max" else (lambda a, b: a <= b)
    dominated = {i for i, p in points.iterrows() for j, o in points.iterrows() if i != j
                 and o.gmacs <= p.gmacs and not_worse(o.q, p.q) and (o.gmacs < p.gmacs or better(o.q, p.q))}
    assert set(report.pareto_front(points, "q", mode).index) == set(points.index) - dominated


def _png(colour) -> bytes:
    buf = io.BytesIO()
    PILImage.new("RGB", (8, 6), colour).save(buf, format="PNG")
    return buf.getvalue()


def _cells(row_html: str) -> list[str]:
    return [html.unescape(re.sub(r"<[^>]+>", "", c)) for c in re.findall(r"<td>(.*?)</td>", row_html)]


def paper_rows_html(text: str) -> list[list[str]]:
    """The rows of the page's tables under 'The paper beside the sweep', as cell texts."""
    section = text.split("<h2>The paper beside the sweep</h2>")[1].split("<h2>")[0]
    return [_cells(r) for r in re.findall(r"<tr>(.*?)</tr>", section) if "<td>" in r]


def paper_rows_markdown(text: str) -> list[list[str]]:
    section = text.split("## The paper beside the sweep")[1].split("\n## ")[0]
    return [[c.strip().replace("\\|", "|").replace("`", "") for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            for line in section.splitlines() if line.startswith("| ") and not line.startswith("| row |")]


def check_self_contained(page: str) -> int:
    """Every image is a data: URI and nothing outside the file is referenced; returns the number of images."""
    assert not re.search(r"""(href|src)\s*=\s*["'](?!data:)""", page), "a reference outside the page"
    assert "url(" not in page and "@import" not in page
    images = re.findall(r'<img [^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == page.count("<img ")
    return len(images)


def test_report_of_a_toy_sweep_with_a_failed_trial(tmp_path, toy_spec, monkeypatch, capsys):
    def plot(trials, evaluations, out, sweep):
        Path(out).write_bytes(_png("red"))
        Path(out).with_name(Path(out).stem + "-detail.png").write_bytes(_png("blue"))
    toy_paper = Paper("Toy et al., The toy paper, 2026", (
        Published("Table 1", "lr 0.05", "loss", 0.5, where={"lr": 0.05}),
        Published("Table 1", "lr 0.5", "loss", 0.25, where={"lr": 0.5}),
        Published("Table 2", "parameters", "params", 100.0),
    ), note="Table 3 is a figure.")
    monkeypatch.setitem(T._REGISTRY, "toy", dataclasses.replace(TOY, plot=plot, paper=toy_paper))
    toy_spec["search"]["include"] = [{"fail": True}]
    toy_spec["search"]["num_samples"] = 2
    spec = tmp_path / "toy.yaml"
    spec.write_text(yaml.safe_dump(toy_spec))
    assert cli.main(["run", str(spec), "--local"]) == 1  # the include row fails, twice
    sweep = tmp_path / "results" / "toy-sweep"
    assert capsys.readouterr().out.endswith(f"report:    sweeplab report {sweep}\n")  # the run says how
    assert cli.main(["report", str(spec)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {sweep}/results/report.html and {sweep}/results/report.md"
    page = (sweep / "results" / "report.html").read_text()
    twin = (sweep / "results" / "report.md").read_text()

    trials = pd.concat([pd.read_parquet(f) for f in (sweep / "results" / "trials").iterdir()])
    repeats = trials[(trials.lr == 0.05) & (trials.status == "completed")].sort_values("trial_id")
    assert len(repeats) == 2
    mean, sd = repeats.loss.mean(), repeats.loss.std()  # the toy's metric `loss` names its column
    rows = paper_rows_html(page)
    assert rows[0][:5] == ["lr 0.05", "loss", "0.5", f"{mean:.4g} ± {sd:.4g}", f"{mean - 0.5:+.4g}"]
    assert rows[0][5] == "n=2" and all(t in rows[0][7] for t in repeats.trial_id)
    assert rows[1][:4] == ["lr 0.5", "loss", "0.25", "not run"]
    params = trials[trials.status == "completed"].params
    assert rows[2][:4] == ["parameters", "params", "100", f"{params.mean():.4g} ± {params.std():.4g}"]
    assert paper_rows_markdown(twin) == rows  # the twin has the same rows
    assert "Toy et al., The toy paper, 2026" in page and "Table 3 is a figure." in page

    assert check_self_contained(page) == 3  # the plot, the PNG it drew beside it, the Pareto front
    for colour in ("red", "blue"):
        assert base64.b64encode(_png(colour)).decode() in page
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", twin)
    assert len(linked) == 3 and all((sweep / "results" / link).is_file() for link in linked)
    assert (sweep / "results" / linked[0]).read_bytes() == _png("blue")  # toy-detail.png sorts first
    failed = trials[trials.status == "failed"].trial_id
    assert len(failed) == 2 and all(t in page for t in failed) and "RuntimeError" in page
    assert "6 planned: 4 completed, 0 stopped, 2 failed" in page and '"num_samples": 2' in html.unescape(page)

    out = tmp_path / "elsewhere" / "toy.html"
    assert cli.main(["report", str(sweep), "--out", str(out)]) == 0
    assert out.is_file() and (out.parent / "toy.md").is_file() and len(list((out.parent / "toy_files").iterdir())) == 3


def test_report_refuses_what_it_cannot_read_or_write(tmp_path, toy_spec, capsys):
    assert cli.main(["report", str(tmp_path / "nothing")]) == 1
    assert "no results under" in capsys.readouterr().err
    toy_spec["search"] = {"algorithm": "grid", "space": {}, "include": [{"fail": True}]}
    spec = tmp_path / "toy.yaml"
    spec.write_text(yaml.safe_dump(toy_spec))
    assert cli.main(["run", str(spec), "--local"]) == 1
    capsys.readouterr()
    assert cli.main(["report", str(spec)]) == 0  # nothing completed: the report says so and names the cause
    page = (tmp_path / "results" / "toy-sweep" / "results" / "report.html").read_text()
    assert "No trial completed: no figure." in page and "RuntimeError" in page
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert cli.main(["report", str(spec), "--out", str(blocker / "r.html")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot write") and "Traceback" not in err
    assert cli.main(["plot", str(spec)]) == 1 and "nothing to plot" in capsys.readouterr().err


def _run_row(row: list[str]) -> bool:
    return row[3] != "not run"


# A smoke spec of each task, sizes set smaller, and how many of its paper's rows it runs at least. The task's tiny
# sizes apply where neither the spec searches the field nor a paper's row selects on it.
SMOKE = {
    "segmentation": ("segmentation-baselines-smoke.yaml", ["n_mosaics=2", "mosaic_size=48"], 4),
    "tagging": ("tagging-musicnn-smoke.yaml", [], 1),
    "registration": ("registration-table1-smoke.yaml", [], 1),
    "compression": ("compression-single-gamma-smoke.yaml", [], 0),
    "restoration": ("restoration-stage1-smoke.yaml", [], 0),
}


@pytest.mark.parametrize("name", sorted(SMOKE))
def test_report_of_each_tasks_smoke_sweep(name, tmp_path):
    spec_name, sets, least_rows_run = SMOKE[name]
    task = get_task(name)
    kept = set(load(SWEEPS / spec_name).space) | {k for p in task.paper.results for k in p.where}  # the method's
    tiny = [f"{k}=[{','.join(map(str, v))}]" if isinstance(v, tuple) else f"{k}={v}" for k, v in task.tiny.items()
            if k not in kept and not any(s.startswith(f"{k}=") for s in sets)]  # sizes only, never its method
    run_cli(["run", SWEEPS / spec_name, "--local", "--set", f"storage={tmp_path}", *tiny, *sets], tmp_path)
    sweep = tmp_path / yaml.safe_load((SWEEPS / spec_name).read_text())["name"]
    run_cli(["report", sweep], tmp_path)
    page = (sweep / "results" / "report.html").read_text()
    twin = (sweep / "results" / "report.md").read_text()
    assert check_self_contained(page) >= 2  # the task's figure(s) and the Pareto front
    assert task.paper.title in html.unescape(page)
    rows = paper_rows_html(page)
    assert paper_rows_markdown(twin) == rows
    assert len(rows) == len(task.paper.results)
    run = [r for r in rows if _run_row(r)]
    assert len(run) >= least_rows_run
    for row, published in zip(rows, task.paper.results):
        assert row[0] == published.row and row[2] == ("figure only" if published.value is None
                                                      else f"{published.value:.4g}")
        if _run_row(row):  # the sweep's number, and the difference when the paper gives one
            assert re.match(r"^-?[0-9.e+-]+( ± [0-9.e+-]+)?$", row[3]) and row[7].count("local_") >= 1
            assert published.value is None or math.isfinite(float(row[4]))
    if not task.paper.results:
        assert "The paper's text has no table to compare" in html.unescape(page)
