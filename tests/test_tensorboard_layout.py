"""What TensorBoard shows for a run that was resumed: the latest leg's hyperparameters once
(with its ckpt_path), one test point, one graph, one model summary; the HParams metrics are
the final val/test values with the optimized metric first. Read with TensorBoard's own readers."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from conftest import FAST, read_json, read_scalars, train

pytestmark = pytest.mark.slow


def event_counts(tb_dir: Path) -> tuple[Counter, list]:
    """How often each tag (and 'graph') occurs over all event files, and the hparams plugin's contents."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    counts: Counter = Counter()
    hparams = []
    for path in sorted(tb_dir.glob("events.out.tfevents.*")):
        for event in EventFileLoader(str(path)).Load():
            if event.HasField("graph_def"):
                counts["graph"] += 1
            for value in event.summary.value:
                counts[value.tag] += 1
                if value.metadata.plugin_data.plugin_name == "hparams":
                    hparams.append((value.tag, value.metadata.plugin_data.content))
    return counts, hparams


@pytest.fixture(scope="module")
def resumed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("resumed") / "run"
    train(*FAST, "trainer.max_epochs=2", f"hydra.run.dir={run}")
    train(*FAST, "trainer.max_epochs=3", "ckpt_path=last", f"hydra.run.dir={run}")
    return run


def test_a_resumed_run_has_one_session_one_test_point_one_graph(resumed: Path) -> None:
    from tensorboard.plugins.hparams import plugin_data_pb2

    counts, hparams = event_counts(resumed)
    assert counts["graph"] == 1 and counts["model/summary/text_summary"] == 1
    assert counts["custom_scalars__config__"] == 1
    assert counts["_hparams_/session_start_info"] == counts["_hparams_/experiment"] == 1
    start = next(plugin_data_pb2.HParamsPluginData.FromString(c) for t, c in hparams
                 if t == "_hparams_/session_start_info").session_start_info.hparams
    assert start["trainer.max_epochs"].number_value == 3  # the latest leg's, not the first's
    assert start["ckpt_path"].string_value == "last"  # as given on the command line
    assert start["model"].string_value == "mlp" and start["optimizer"].string_value == "adam"  # not overridden
    scalars = read_scalars(resumed)
    metrics = read_json(resumed / "metrics.json")
    final_step = scalars["val/acc"][-1][0]
    assert [step for step, _ in scalars["test/acc"]] == [final_step]  # replaced, not a second point
    assert scalars["test/acc"][0][1] == pytest.approx(metrics["test/acc"], abs=1e-6)


def test_custom_scalars_put_train_and_val_on_one_chart(resumed: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.custom_scalar import layout_pb2

    acc = EventAccumulator(str(resumed), size_guidance={"tensors": 0})
    acc.Reload()
    layout = layout_pb2.Layout.FromString(acc.Tensors("custom_scalars__config__")[0].tensor_proto.string_val[0])
    charts = {chart.title: list(chart.multiline.tag) for category in layout.category for chart in category.chart}
    assert charts == {"loss": ["train/loss", "val/loss"], "accuracy": ["train/acc", "val/acc"]}


def test_hparams_metrics_are_final_val_and_test_values_optimized_first(resumed: Path) -> None:
    from tensorboard.plugins.hparams import plugin_data_pb2

    _, hparams = event_counts(resumed)
    experiment = next(plugin_data_pb2.HParamsPluginData.FromString(c) for t, c in hparams
                      if t == "_hparams_/experiment").experiment
    tags = [m.name.tag for m in experiment.metric_infos]
    assert tags[0] == "val/acc"
    assert set(tags) == {"val/acc", "val/loss", "test/acc", "test/loss"}


def test_a_real_tensorboard_serves_the_runs_tags_and_hparams(resumed: Path) -> None:
    """``tensorboard --logdir`` on loopback, asked through its HTTP API as the browser asks."""
    import json
    import re
    import subprocess
    import sys
    import time
    import urllib.request

    logdir = resumed.parent
    proc = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", "127.0.0.1",
                             "--port", "0", "--load_fast", "false"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        url, deadline, seen = None, time.monotonic() + 120, []
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
            seen.append(line)
            found = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
            url = found.group(1) if found else None
        assert url, "".join(seen)

        def get(path: str, body: dict | None = None) -> object:
            data = None if body is None else json.dumps(body).encode()
            request = urllib.request.Request(url + path, data=data, headers={"Content-Type": "application/json",
                                                                            "X-XSRF-Protected": "1"})
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.loads(response.read())

        runs: list = []
        while time.monotonic() < deadline and "run" not in runs:  # TensorBoard loads in the background
            runs = get("/data/runs")
            time.sleep(0.5)
        assert runs == ["run"]
        tags = get("/data/plugin/scalars/tags")["run"]
        assert {"train/loss", "val/acc", "test/acc", "lr"} <= set(tags)
        experiment = get("/data/plugin/hparams/experiment", {"experimentName": ""})
        assert [m["name"]["tag"] for m in experiment["metricInfos"]][0] == "val/acc"
        assert {"model", "optimizer", "trainer.max_epochs", "ckpt_path"} <= {h["name"] for h in experiment["hparamInfos"]}
        groups = get("/data/plugin/hparams/session_groups",
                     {"experimentName": "", "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE",
                                                                "STATUS_RUNNING"],
                      "colParams": [], "startIndex": 0, "sliceSize": 10})["sessionGroups"]
        assert len(groups) == 1 and groups[0]["hparams"]["trainer.max_epochs"] == 3
    finally:
        proc.terminate()
        proc.wait(timeout=30)
