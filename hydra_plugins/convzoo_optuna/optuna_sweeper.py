"""An Optuna sweeper on Hydra's public Sweeper interface, for current Optuna.

Why not hydra-optuna-sweeper: its newest release (1.3.0) requires optuna<3, so pip installs
optuna 2.10 of 2021, which needs sqlalchemy<2 for SQLite storage; a trial returning NaN crashes
the whole sweep and stays RUNNING in the database. This sweeper asks Optuna (5.x) for trials,
launches them through whatever Hydra launcher is configured, and tells Optuna the result:

- the study lives in `<sweep dir>/optuna.db` (SQLite), so rerunning the same command with the
  same `hydra.sweep.dir` continues it; `n_trials` is the number of *new* trials;
- a trial whose job failed (its results.json says why) or returned NaN is marked FAIL, and the
  study goes on; trials a killed sweep left RUNNING are marked FAIL when the study is reopened;
- the direction follows the task's own `mode` (max: maximise its main metric) unless set;
- job N of the sweep dir is trial N of the study.

Search spaces use Hydra's override grammar, in `hydra.sweeper.params` or on the command line:
`interval(a, b)` (float; int when both ends are ints), `tag(log, interval(a, b))`,
`choice(a, b, c)`, `range(a, b, step)`; anything else is a fixed value.
"""

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.core.plugins import Plugins
from hydra.core.utils import JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import TrialState

log = logging.getLogger(__name__)

BEST_TRIAL_FILE = "best_trial.yaml"


@dataclass
class ConvzooOptunaSweeperConf:
    _target_: str = "hydra_plugins.convzoo_optuna.optuna_sweeper.ConvzooOptunaSweeper"
    #: "maximize", "minimize", or "auto": the task's own mode (its class attribute)
    direction: str = "auto"
    n_trials: int = 20
    #: trials launched at once (a parallel launcher runs them side by side)
    n_jobs: int = 1
    study_name: str = "convzoo"
    #: None: sqlite:///<sweep dir>/optuna.db
    storage: str | None = None
    seed: int | None = None
    params: dict[str, str] = field(default_factory=dict)


ConfigStore.instance().store(
    group="hydra/sweeper", name="convzoo_optuna", node=ConvzooOptunaSweeperConf, provider="convzoo"
)


def to_distribution(override: Override) -> BaseDistribution | None:
    """An Optuna distribution for a sweep override; None for a fixed value."""
    if not override.is_sweep_override():
        return None
    value = override.value()
    if isinstance(value, IntervalSweep):
        log_scale = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(value.start, value.end, log=log_scale)
        return FloatDistribution(float(value.start), float(value.end), log=log_scale)
    if isinstance(value, ChoiceSweep | RangeSweep):
        return CategoricalDistribution(list(override.sweep_iterator()))
    raise ValueError(f"{override.input_line}: not a search space Optuna can sample")


class ConvzooOptunaSweeper(Sweeper):
    def __init__(
        self,
        direction: str,
        n_trials: int,
        n_jobs: int,
        study_name: str,
        storage: str | None,
        seed: int | None,
        params: dict[str, str],
    ):
        self.direction = direction
        self.n_trials = n_trials
        self.n_jobs = max(1, n_jobs)
        self.study_name = study_name
        self.storage = storage
        self.seed = seed
        self.params = dict(params or {})

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.hydra_context = hydra_context
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )
        self.sweep_dir = Path(config.hydra.sweep.dir)

    def task_direction(self) -> str:
        if self.direction != "auto":
            return self.direction
        mode = get_class(self.config.task._target_).mode
        return "maximize" if mode == "max" else "minimize"

    def search_space(self, arguments: list[str]) -> tuple[dict[str, BaseDistribution], list[str]]:
        """Distributions by override key, and the fixed overrides every trial gets."""
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        lines = [f"{k}={v}" for k, v in self.params.items()] + list(arguments)
        space, fixed = {}, []
        for override in parser.parse_overrides(lines):
            distribution = to_distribution(override)
            if distribution is None:
                fixed.append(override.input_line)
            else:
                space[override.get_key_element()] = distribution
        if not space:
            raise ValueError(
                "the Optuna sweep has nothing to search: give hydra.sweeper.params or a sweep "
                "override such as task.optimizer.lr='tag(log, interval(1e-4, 1e-2))'"
            )
        return space, fixed

    def open_study(self) -> optuna.Study:
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        study = optuna.create_study(
            study_name=self.study_name,
            storage=self.storage or f"sqlite:///{self.sweep_dir / 'optuna.db'}",
            direction=self.task_direction(),
            sampler=optuna.samplers.TPESampler(seed=self.seed),
            load_if_exists=True,
        )
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            log.warning(f"trial {trial.number} was left running by a stopped sweep: marked failed")
            study.tell(trial.number, state=TrialState.FAIL)
        return study

    def sweep(self, arguments: list[str]) -> list[Any]:
        space, fixed = self.search_space(arguments)
        study = self.open_study()
        OmegaConf.save(self.config, self.sweep_dir / "multirun.yaml")
        returns = []
        for start in range(0, self.n_trials, self.n_jobs):
            trials = [study.ask(space) for _ in range(min(self.n_jobs, self.n_trials - start))]
            batch = [[*fixed, *(f"{key}={trial.params[key]}" for key in space)] for trial in trials]
            self.validate_batch_is_legal(batch)
            results = self.launcher.launch(batch, initial_job_idx=trials[0].number)
            for trial, result in zip(trials, results):
                value = result.return_value if result.status == JobStatus.COMPLETED else None
                if value is None or not math.isfinite(float(value)):
                    log.warning(f"trial {trial.number} failed or returned {value}: marked failed")
                    study.tell(trial, state=TrialState.FAIL)
                else:
                    study.tell(trial, float(value))
            returns.append(results)
        self.write_best(study)
        return returns

    def write_best(self, study: optuna.Study) -> None:
        completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not completed:
            log.warning("no trial of the study completed")
            return
        best = study.best_trial
        record = {"trial": best.number, "value": best.value, "params": best.params,
                  "direction": study.direction.name.lower(), "trials": len(study.trials)}  # fmt: skip
        OmegaConf.save(OmegaConf.create(record), self.sweep_dir / BEST_TRIAL_FILE)
        log.info(f"best trial {best.number}: {best.value} with {best.params}")
