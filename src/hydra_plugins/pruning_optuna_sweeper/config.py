"""The sweeper's config and its sampler and pruner groups, in Hydra's ConfigStore.

``hydra/sweeper=expkit_optuna``, ``hydra/sweeper/sampler=tpe|random|grid|cmaes|gp`` and
``hydra/sweeper/pruner=median|percentile|successive_halving|hyperband|none``; sampler and
pruner settings use Optuna's own argument names.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

SWEEPER_NAME = "expkit_optuna"


@dataclass
class TPESamplerConf:
    _target_: str = "optuna.samplers.TPESampler"
    seed: Optional[int] = None
    n_startup_trials: int = 10
    n_ei_candidates: int = 24
    multivariate: bool = False
    constant_liar: bool = True  # parallel trials: pending ones count as bad, so they are not repeated


@dataclass
class RandomSamplerConf:
    _target_: str = "optuna.samplers.RandomSampler"
    seed: Optional[int] = None


@dataclass
class GridSamplerConf:
    """The grid comes from the search space (choice and range parameters only)."""

    _target_: str = "optuna.samplers.GridSampler"
    seed: Optional[int] = None


@dataclass
class CmaEsSamplerConf:
    _target_: str = "optuna.samplers.CmaEsSampler"
    seed: Optional[int] = None
    n_startup_trials: int = 1
    sigma0: Optional[float] = None
    popsize: Optional[int] = None
    restart_strategy: Optional[str] = None


@dataclass
class GPSamplerConf:
    _target_: str = "optuna.samplers.GPSampler"
    seed: Optional[int] = None
    n_startup_trials: int = 10
    deterministic_objective: bool = False


@dataclass
class MedianPrunerConf:
    _target_: str = "optuna.pruners.MedianPruner"
    n_startup_trials: int = 5  # trials that are never pruned, to have a median at all
    n_warmup_steps: int = 2    # validations (epochs) before a trial may be pruned (Optuna's default: 0)
    interval_steps: int = 1
    n_min_trials: int = 1


@dataclass
class PercentilePrunerConf(MedianPrunerConf):
    """The median pruner's settings and the percentile (of the trials' values) to stay above."""

    _target_: str = "optuna.pruners.PercentilePruner"
    percentile: float = 25.0


@dataclass
class SuccessiveHalvingPrunerConf:
    _target_: str = "optuna.pruners.SuccessiveHalvingPruner"
    min_resource: Any = "auto"
    reduction_factor: int = 4
    min_early_stopping_rate: int = 0
    bootstrap_count: int = 0


@dataclass
class HyperbandPrunerConf:
    _target_: str = "optuna.pruners.HyperbandPruner"
    min_resource: int = 1
    max_resource: Any = "auto"
    reduction_factor: int = 3
    bootstrap_count: int = 0


@dataclass
class NopPrunerConf:
    _target_: str = "optuna.pruners.NopPruner"


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.pruning_optuna_sweeper.sweeper.OptunaSweeper"
    _recursive_: bool = False  # the sweeper builds sampler and pruner itself (grid needs the search space)
    defaults: List[Any] = field(default_factory=lambda: ["_self_", {"sampler": "tpe"}, {"pruner": "none"}])
    sampler: Any = MISSING
    pruner: Any = MISSING
    direction: Any = None            # maximize | minimize | a list (several objectives); null: optimized_mode
    study_name: Optional[str] = None  # null: "expkit"
    storage: Optional[str] = None    # null: sqlite in the sweep dir; an RDB URL; or a path ending in .journal
    n_trials: int = 20               # trials to finish; an interrupted search resumes to the same count
    n_jobs: Optional[int] = None     # trials at once; null: the launcher's own parallelism (1 in-process)
    params: Optional[Dict[str, Any]] = None  # the search space, in Hydra's override grammar
    trial: Optional[int] = None      # set by the sweeper in each trial's job: which trial it is


def register() -> None:
    store = ConfigStore.instance()
    store.store(group="hydra/sweeper", name=SWEEPER_NAME, node=OptunaSweeperConf, provider="expkit")
    for name, node in {"tpe": TPESamplerConf, "random": RandomSamplerConf, "grid": GridSamplerConf,
                       "cmaes": CmaEsSamplerConf, "gp": GPSamplerConf}.items():
        store.store(group="hydra/sweeper/sampler", name=name, node=node, package="hydra.sweeper.sampler",
                    provider="expkit")
    for name, node in {"median": MedianPrunerConf, "percentile": PercentilePrunerConf,
                       "successive_halving": SuccessiveHalvingPrunerConf, "hyperband": HyperbandPrunerConf,
                       "none": NopPrunerConf}.items():
        store.store(group="hydra/sweeper/pruner", name=name, node=node, package="hydra.sweeper.pruner",
                    provider="expkit")


register()
