"""`python -m tasks.report DIR`: Pareto fronts and the backbone x task heat map from results.json."""

import json

import numpy as np
import pytest

from tasks.report import load_runs, main, pareto_front


def record(backbone, task, value, params, mode="max", status="completed"):
    return {
        "status": status,
        "choices": {"backbone": backbone, "task": task, "data": "d", "model": backbone + "_m"},
        "main_metric": f"test/{task}_metric",
        "main_metric_mode": mode,
        "metrics": {f"test/{task}_metric": value} if status == "completed" else {},
        "params_m": params,
        "gmacs": params / 10,
        "infer_images_per_s": 1000 / params,
    }


def write_runs(folder, records):
    for i, r in enumerate(records):
        (folder / str(i)).mkdir(parents=True)
        (folder / str(i) / "results.json").write_text(json.dumps(r))


def test_pareto_front_keeps_the_points_nothing_beats():
    cost = np.array([1.0, 2.0, 3.0, 2.5, 4.0])
    score = np.array([0.5, 0.7, 0.9, 0.6, 0.9])
    # 3 (cost 2.5, 0.6) is beaten by 1 (cost 2, 0.7); 4 ties 2's score at a higher cost
    assert pareto_front(cost, score).tolist() == [0, 1, 2]


def test_report_writes_pictures_and_markdown_for_every_task(tmp_path):
    write_runs(tmp_path, [
        record("hornet", "classification", 0.9, 20.0),
        record("convnext", "classification", 0.8, 3.0),
        record("convnext", "classification", 0.85, 3.0),  # a better rerun of the same backbone
        record("hornet", "denoising", 29.0, 20.0),
        record("convnext", "volatility", 0.4, 3.0, mode="min"),
        record("espcn", "classification", 0.0, 1.0, status="failed"),
    ])  # fmt: skip
    assert len(load_runs(tmp_path)) == 5  # the failed job is no point
    main([str(tmp_path)])
    report = (tmp_path / "report" / "report.md").read_text()
    for task in ("classification", "denoising", "volatility"):
        assert f"## {task}" in report
        assert (tmp_path / "report" / f"{task}_pareto.png").stat().st_size > 0
    assert (tmp_path / "report" / "heatmap.png").stat().st_size > 0
    assert "| convnext | convnext_m | 0.85 |" in report  # the best run of a backbone
    assert "espcn" not in report


def test_report_of_an_empty_folder_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="no completed results.json"):
        main([str(tmp_path)])


def test_grid_mixers_are_told_apart(tmp_path):
    runs = [record("metaformer_grid", "classification", 0.9, 12.0),
            record("metaformer_grid", "classification", 0.8, 11.0)]  # fmt: skip
    runs[0]["overrides"], runs[1]["overrides"] = ["backbone.mixer=gnconv"], ["backbone.mixer=aff"]
    write_runs(tmp_path, runs)
    main([str(tmp_path)])
    report = (tmp_path / "report" / "report.md").read_text()
    assert "| metaformer_grid:gnconv |" in report and "| metaformer_grid:aff |" in report
