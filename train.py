"""Train a model: compose the config, build the objects, fit, test.

    python train.py                                  # the default experiment
    python train.py model=cnn trainer.max_epochs=5   # change any group or key
    python train.py -m optimizer.lr=1e-3,1e-2        # a sweep
"""
from __future__ import annotations

from expkit.entry import main as run_main, prepare

prepare()  # signals, config schemas, TensorBoard's C checksums, no exit-time collections: see expkit/entry.py

import hydra
from omegaconf import DictConfig

from expkit.runner import resolve_ckpt_path, run, run_dir


def build(node: DictConfig | None, **kwargs):
    """Instantiate a config node; an empty group option (``scheduler=none``) gives None."""
    from hydra.utils import instantiate

    return instantiate(node, **kwargs) if node else None


def train(cfg: DictConfig) -> dict[str, float]:
    from expkit.config import hparam_metrics, hparams, to_plain
    from expkit.config.sizes import build_model
    from expkit.config.stored import SIZES_KEY, check_resume_config, read_stored_config
    from expkit.engine import seed_everything
    from expkit.engine.metrics import STEP_ONLY_METRICS
    from expkit.report import RunReport, log_lines
    from expkit.sweep.objective import was_pruned

    ckpt_path = resolve_ckpt_path(cfg, run_dir())
    stored = read_stored_config(ckpt_path) if ckpt_path is not None else None
    check_resume_config(stored, to_plain(cfg), ckpt_path)  # fail before building anything if the model changed
    seed_everything(cfg.seed)
    datamodule = build(cfg.data)
    model, sizes = build_model(cfg.model, datamodule)
    config = {**to_plain(cfg), SIZES_KEY: sizes}  # stored in checkpoints: a resume checks the sizes too
    check_resume_config(stored, config, ckpt_path, keys=(SIZES_KEY,))
    task = build(cfg.task, model=model, optimizer=build(cfg.optimizer), scheduler=build(cfg.scheduler))
    callbacks = [build(node) for node in (cfg.callbacks or {}).values() if node]  # null: switched off
    logger = build(cfg.logger)
    report = RunReport()  # model summary at start, results table at the end
    trainer = build(cfg.trainer, callbacks=[*callbacks, report], logger=logger)

    trainer.fit(task, datamodule, ckpt_path=ckpt_path, config=config)
    metrics = {k: v for k, v in trainer.callback_metrics.items()  # final values, not per-step ones
               if "/" in k and not k.endswith("_step") and k not in STEP_ONLY_METRICS}
    if cfg.test and not was_pruned(metrics):  # a pruned trial's test score would only cost time
        metrics.update(trainer.test(task, datamodule, ckpt_path="best"))
    metrics["best_epoch"] = trainer.best_epoch  # from its checkpoint callback (None without one)
    log_lines(report.table(trainer, metrics, run_dir()))
    if logger is not None:
        logger.log_hyperparams(hparams(cfg), hparam_metrics(metrics, cfg.get("optimized_metric")))
        logger.finalize()
    return metrics


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    return run(cfg, train)


if __name__ == "__main__":
    run_main(main)
