"""expkit's Optuna sweeper without training: the search space from Hydra's override grammar,
the direction, and every sampler seeded (real Optuna, real samplers, a cheap objective)."""
from __future__ import annotations

import math
import re

import optuna
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from expkit.errors import ConfigError
from expkit.sweep import search_space, study as studies
from hydra_plugins.pruning_optuna_sweeper import config as sweeper_config

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_overrides_become_distributions_and_fixed_values():
    params = {"optimizer.lr": "tag(log, interval(0.0001, 1))", "model": "choice(mlp, linear)",
              "data.batch_size": "range(32, 129, 32)", "trainer.max_epochs": "5"}
    space = search_space.parse(params, ["seed=1,2", "model=choice(mlp,cnn)", "+extra=tag(int, interval(1, 9))"])
    assert space.distributions == {
        "optimizer.lr": FloatDistribution(0.0001, 1.0, log=True),
        "model": CategoricalDistribution(["mlp", "cnn"]),  # the command line wins over params
        "data.batch_size": IntDistribution(32, 128, step=32),  # stop excluded, as in Hydra
        "seed": CategoricalDistribution([1, 2]),
        "+extra": IntDistribution(1, 9),
    }
    assert space.fixed == ["trainer.max_epochs=5"]
    overrides = space.overrides({"optimizer.lr": 0.001, "model": "cnn", "data.batch_size": 64, "seed": 2, "+extra": 3})
    assert overrides == ["optimizer.lr=0.001", "model=cnn", "data.batch_size=64", "seed=2", "+extra=3",
                         "trainer.max_epochs=5"]
    assert search_space.parse({"b": "range(32, 129, 32)", "m": "a,b"}, []).grid() == {"b": [32, 64, 96, 128], "m": ["a", "b"]}


@pytest.mark.parametrize("params, message", [
    ({"optimizer.lr": "tag(log, interval(0, 1))"}, "hydra.sweeper.params.optimizer.lr=tag(log, interval(0, 1)): "
                                                   "needs low < high and low > 0 on a log scale"),
    ({"seed": "range(5, 1)"}, "hydra.sweeper.params.seed=range(5, 1, 1): needs start < stop and a positive step"),
    ({"model": "glob(*)"}, "hydra.sweeper.params.model=glob(*): not a search space"),
])
def test_bad_search_space_names_key_value_and_what_is_allowed(params, message):
    with pytest.raises(ConfigError, match="^" + re.escape(message)):
        search_space.parse(params, [])


def test_grid_refuses_a_continuous_range():
    space = search_space.parse({"optimizer.lr": "interval(0.1, 1)"}, [])
    with pytest.raises(ConfigError, match="optimizer.lr: the grid sampler needs a finite set of values"):
        space.grid()


def test_direction_follows_optimized_mode_and_refuses_contradictions():
    assert studies.directions(None, "max", 1) == ["maximize"]
    assert studies.directions(None, "min", 1) == ["minimize"]
    assert studies.directions(["maximize", "minimize"], "max", 2) == ["maximize", "minimize"]
    with pytest.raises(ConfigError, match="hydra.sweeper.direction=minimize: disagrees with optimized_mode=max"):
        studies.directions("minimize", "max", 1)
    with pytest.raises(ConfigError, match="hydra.sweeper.direction=null: with 2 objectives"):
        studies.directions(None, "max", 2)
    with pytest.raises(ConfigError, match="hydra.sweeper.storage=optuna.db: not a storage"):
        studies.storage_url("optuna.db", "/tmp")


SAMPLERS = {"tpe": sweeper_config.TPESamplerConf, "random": sweeper_config.RandomSamplerConf,
            "grid": sweeper_config.GridSamplerConf, "cmaes": sweeper_config.CmaEsSamplerConf,
            "gp": sweeper_config.GPSamplerConf}


def _trials(name: str, seed: int, space: search_space.SearchSpace, n: int = 6) -> list[dict]:
    """``n`` trials of the sampler as the sweeper builds it (ask and tell, as the sweep does)."""
    cfg = OmegaConf.structured(SAMPLERS[name](seed=seed))
    if "n_startup_trials" in cfg:
        cfg.n_startup_trials = 2  # so the model-based part runs too
    sampler = instantiate(cfg, search_space=space.grid()) if name == "grid" else instantiate(cfg)
    study = optuna.create_study(sampler=sampler, direction="minimize")
    for _ in range(n):
        trial = study.ask(space.distributions)
        study.tell(trial, (math.log10(trial.params["lr"]) + 2) ** 2 + trial.params["layers"])
    return [t.params for t in study.trials]


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_sampler_is_seeded(name):
    grid_like = "grid" == name
    params = {"lr": "choice(0.0001, 0.001, 0.01, 0.1)" if grid_like else "tag(log, interval(0.0001, 1))",
              "layers": "range(1, 4)" if grid_like else "tag(int, interval(1, 3))"}
    space = search_space.parse(params, [])
    first = _trials(name, 7, space)
    assert _trials(name, 7, space) == first  # same seed, same trials
    assert _trials(name, 8, space) != first  # another seed, others


@pytest.mark.parametrize("sampler, pruner, pruner_class", [
    ("tpe", "median", "MedianPruner"), ("random", "percentile", "PercentilePruner"),
    ("grid", "successive_halving", "SuccessiveHalvingPruner"), ("cmaes", "hyperband", "HyperbandPruner"),
    ("gp", "none", "NopPruner")])
def test_every_sampler_and_pruner_option_composes_with_the_search_config(sampler, pruner, pruner_class, root):
    from hydra import compose, initialize_config_dir

    from expkit.config.schema import register

    register()  # the config schemas, as train.py's prepare() does

    with initialize_config_dir(str(root / "conf"), version_base="1.3"):
        cfg = compose("train", return_hydra_config=True, overrides=[
            "hparams_search=digits_optuna", f"hydra/sweeper/sampler={sampler}", f"hydra/sweeper/pruner={pruner}",
            "hydra.sweeper.sampler.seed=5"])
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.study_name == "digits_optuna"
    assert sweeper.sampler.seed == 5
    assert type(instantiate(sweeper.pruner)).__name__ == pruner_class
    assert cfg.callbacks.optuna_pruning.monitor == "val/acc"  # the trial's side of pruning comes with it
