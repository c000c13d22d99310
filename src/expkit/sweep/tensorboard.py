"""A sweep in TensorBoard's HParams tab: one experiment (the columns) for all jobs, and a
row for a failed job too, marked as failed.

A job that succeeds logs its hyperparameters itself (``TensorBoardLogger.log_hyperparams``);
one that raised never gets there, so the sweep callback records its session here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from expkit.loggers.tensorboard import FINAL_SUFFIX, _hparam_value, final_writer


def record_failed_session(tb_dir: Path, params: Mapping[str, Any]) -> None:
    """Write a session start (the job's hyperparameters) and a session end marked FAILURE."""
    from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2
    from torch.utils.tensorboard.summary import hparams

    _, start, end = hparams({k: _hparam_value(v) for k, v in params.items()}, {})
    content = plugin_data_pb2.HParamsPluginData.FromString(end.value[0].metadata.plugin_data.content)
    content.session_end_info.status = api_pb2.STATUS_FAILURE
    end.value[0].metadata.plugin_data.content = content.SerializeToString()

    writer = final_writer(Path(tb_dir), wait=False)  # in place of a session an earlier leg wrote (step 0: no purge)
    try:
        writer.add_summary(start)
        writer.add_summary(end)
    finally:
        writer.close()


def write_sweep_experiment(sweep_dir: Path, swept: Sequence[str] = ()) -> bool:
    """One HParams experiment at the sweep's root naming every job's columns.

    TensorBoard takes the first experiment summary it finds under a logdir (the root's comes
    first) for all runs, so without this one ``tensorboard --logdir <sweep dir>`` would show
    only the keys of whichever job it read first. The union of the jobs' hyperparameters and
    metrics (in the first job's order: the optimized metric first), replaced at each sweep end.
    ``swept``: the hyperparameters the sweep changes, marked ``differs``: TensorBoard lists
    those first (then by name), and its table shows only the first few until more are ticked.
    """
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    hparam_infos: dict[str, Any] = {}
    metric_infos: dict[str, Any] = {}
    for path in sorted(Path(sweep_dir).glob(f"*/**/events.out.tfevents.*{FINAL_SUFFIX}")):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.tag != metadata.EXPERIMENT_TAG:
                    continue
                experiment = plugin_data_pb2.HParamsPluginData.FromString(
                    value.metadata.plugin_data.content).experiment
                for info in experiment.hparam_infos:
                    info.ClearField("domain_discrete")  # one job's value is not the domain of all
                    hparam_infos.setdefault(info.name, info)
                for info in experiment.metric_infos:
                    metric_infos.setdefault(info.name.tag, info)
    if not hparam_infos:
        return False
    for name in swept:
        if name in hparam_infos:
            hparam_infos[name].differs = True
    experiment = api_pb2.Experiment(hparam_infos=list(hparam_infos.values()), metric_infos=list(metric_infos.values()))
    content = plugin_data_pb2.HParamsPluginData(version=metadata.PLUGIN_DATA_VERSION, experiment=experiment)
    plugin = SummaryMetadata.PluginData(plugin_name=metadata.PLUGIN_NAME, content=content.SerializeToString())
    value = Summary.Value(tag=metadata.EXPERIMENT_TAG, metadata=SummaryMetadata(plugin_data=plugin))
    writer = final_writer(Path(sweep_dir), wait=False)
    try:
        writer.add_summary(Summary(value=[value]))
    finally:
        writer.close()
    return True
