"""Output-level ensembles of separately trained runs: soft voting, hard voting and stacking
over the predictions finished runs saved (medjax.ensemble.combine), one function that combines
workdirs (medjax.ensemble.output.combine_workdirs), and ensembles as experiments that train
their missing members first (medjax.ensemble.from_config)."""

from medjax.ensemble.combine import COMBINERS, combine
from medjax.ensemble.output import combine_workdirs

__all__ = ["COMBINERS", "combine", "combine_workdirs"]
