"""A failed sweep job still gets a row in TensorBoard's HParams tab, marked as failed.

A job that succeeds logs its hyperparameters itself (``TensorBoardLogger.log_hyperparams``);
one that raised never gets there, so the sweep callback records its session here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from expkit.loggers.tensorboard import _hparam_value


def record_failed_session(tb_dir: Path, params: Mapping[str, Any]) -> None:
    """Write a session start (the job's hyperparameters) and a session end marked FAILURE."""
    from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams

    _, start, end = hparams({k: _hparam_value(v) for k, v in params.items()}, {})
    content = plugin_data_pb2.HParamsPluginData.FromString(end.value[0].metadata.plugin_data.content)
    content.session_end_info.status = api_pb2.STATUS_FAILURE
    end.value[0].metadata.plugin_data.content = content.SerializeToString()

    Path(tb_dir).mkdir(parents=True, exist_ok=True)
    writer = SummaryWriter(log_dir=str(tb_dir))
    try:
        writer.file_writer.add_summary(start)
        writer.file_writer.add_summary(end)
    finally:
        writer.close()
