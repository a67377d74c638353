"""Classifier heads chosen by config.model.head.

"linear" (the default) and "mlp" are the network's own last layers, trained with it
(medjax.models.layers.pooled_head; "mlp" adds config.model.head_hidden). The others are fitted
after training on the trained network's "pooled" features (medjax.heads.registry): the run's
validation and test results become the fitted head's, the network's own are kept under
"network_head" (medjax.heads.in_run), and the fitted head is saved in WORKDIR/head/ for
medjax.predict (medjax.heads.files).
"""

from medjax.heads import classical, elm, in_run  # noqa: F401  (classical, elm register heads)
from medjax.heads.registry import HEADS, NETWORK_HEADS, check_config, is_fitted

__all__ = ["in_run", "HEADS", "NETWORK_HEADS", "check_config", "is_fitted"]
