"""Evaluate a checkpoint on the test split, rebuilding model and data from the config stored in it.

    python eval.py ckpt_path=outputs/train/<run>/checkpoints/best.ckpt
    python eval.py ckpt_path=<file> data.eval_batch_size=512      # overrides apply on top

Writes its own run directory (outputs/eval/<stamp>/) with metrics.json and TensorBoard scalars.
"""
from __future__ import annotations

from expkit.entry import main as run_main, prepare

prepare()  # signals, config schemas, TensorBoard's C checksums, no exit-time collections: see expkit/entry.py

from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from expkit.runner import run, run_dir


def evaluate(cfg: DictConfig) -> dict[str, float]:
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import instantiate

    from expkit.config import ConfigError, validate
    from expkit.config.sizes import build_model
    from expkit.config.stored import merge_stored_config
    from expkit.engine import seed_everything
    from expkit.engine.checkpoint import load

    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path is None:
        raise ConfigError("ckpt_path: required, the checkpoint to evaluate "
                          "(e.g. ckpt_path=outputs/train/<run>/checkpoints/best.ckpt)")
    if not Path(ckpt_path).is_file():
        raise ConfigError(f"ckpt_path={ckpt_path}: no such file")
    state = load(ckpt_path, map_location="cpu", mmap=True)  # one-line CheckpointError if unusable
    if not isinstance(state.get("config"), dict):
        raise ConfigError(f"ckpt_path={ckpt_path}: the checkpoint stores no config (not written by train.py), "
                          "so eval.py cannot rebuild its model and data")
    hydra_cfg = HydraConfig.get()
    cfg = merge_stored_config(cfg, state["config"], list(hydra_cfg.overrides.task),
                              set(hydra_cfg.runtime.choices))
    validate(cfg)
    OmegaConf.save(cfg, run_dir() / "config.yaml", resolve=True)  # what was really evaluated

    seed_everything(cfg.seed)
    datamodule = instantiate(cfg.data)
    task = instantiate(cfg.task, model=build_model(cfg.model, datamodule)[0])
    logger = instantiate(cfg.logger) if cfg.get("logger") else None
    trainer = instantiate(cfg.trainer, callbacks=[], logger=logger)
    trainer.global_step = int(state.get("loop", {}).get("global_step", 0))  # scalars at the checkpoint's step
    metrics = trainer.test(task, datamodule, ckpt_path=ckpt_path)
    if logger is not None:
        logger.finalize()
    return metrics


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> float | None:
    return run(cfg, evaluate)


if __name__ == "__main__":
    run_main(main)
