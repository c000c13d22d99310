"""Train a model: compose the config, build the objects, fit, test.

    python train.py                                  # the default experiment
    python train.py model=cnn trainer.max_epochs=5   # change any group or key
    python train.py -m optimizer.lr=1e-3,1e-2        # a sweep
"""
from __future__ import annotations

import hydra
from omegaconf import DictConfig

from expkit.runner import resolve_ckpt_path, run, run_dir  # importing it registers the config schemas


def build(node: DictConfig | None, **kwargs):
    """Instantiate a config node; an empty group option (``scheduler=none``) gives None."""
    from hydra.utils import instantiate

    return instantiate(node, **kwargs) if node else None


def train(cfg: DictConfig) -> dict[str, float]:
    from expkit.config import hparam_metrics, hparams, to_plain
    from expkit.config.stored import check_resume_config, read_stored_config
    from expkit.engine import seed_everything
    from expkit.report import RunReport, log_lines

    ckpt_path = resolve_ckpt_path(cfg, run_dir())
    if ckpt_path is not None:  # fail before building anything if the model or data shape changed
        check_resume_config(read_stored_config(ckpt_path), to_plain(cfg), ckpt_path)
    seed_everything(cfg.seed)
    datamodule = build(cfg.data)
    model = build(cfg.model)
    task = build(cfg.task, model=model, optimizer=build(cfg.optimizer), scheduler=build(cfg.scheduler))
    callbacks = [build(node) for node in (cfg.callbacks or {}).values() if node]  # null: switched off
    logger = build(cfg.logger)
    report = RunReport()  # model summary at start, results table at the end
    trainer = build(cfg.trainer, callbacks=[*callbacks, report], logger=logger)

    trainer.fit(task, datamodule, ckpt_path=ckpt_path, config=to_plain(cfg))
    metrics = {k: v for k, v in trainer.callback_metrics.items() if "/" in k and not k.endswith("_step")}
    if cfg.test:
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
    main()
