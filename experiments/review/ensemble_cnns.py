"""Output-level ensemble of three light CNNs of the review recipe: soft voting, hard voting or
stacking (`:method=`) of separately trained networks.

Question: does combining three small CNNs that differ in width, activation and kernel size
beat the single plain CNN (plain_cnn.py) on the same data, budget per network and seeds?
Design: the scoping review's output-level ensembles of separately trained CNNs, combined by
averaging probabilities (soft), majority vote (hard) or a logistic-regression meta-learner
(stacking, fitted on validation; its validation numbers are cross-validated).
Members (each the plain recipe with `:seed` and `:data`; trained into WORKDIR/members/ unless
--config.ensemble.members_dir names a shared folder):
  0 the plain CNN (widths 16-32-64, ReLU, 3x3)
  1 wider, GELU (widths 24-48-96)
  2 5x5 kernels, ELU (widths 16-32-64)
Data: BreastMNIST by default; `:data=pneumoniamnist` or `:data=phantom`.
Command (the three methods share the seed's members, trained once):
    python -m medjax.run --config experiments/review/ensemble_cnns.py:seed=0,method=soft \
        --workdir runs/review/ens_cnns_soft0 \
        --config.ensemble.members_dir=runs/review/ens_cnns_members0
    python -m medjax.run --config experiments/review/ensemble_cnns.py:runlocal,data=phantom \
        --workdir /tmp/x
Result (BreastMNIST test, mean +- SD over seeds 0-2, members trained with that seed; 2-core
CPU shared with other jobs): soft AUC 0.923 +- 0.002, accuracy 0.887 +- 0.004, malignant
sensitivity 0.706 +- 0.014; hard 0.922 +- 0.003, 0.885 +- 0.006, 0.690 +- 0.024; stacking
0.923 +- 0.003, 0.889 +- 0.004, 0.722 +- 0.027. The plain CNN (member 0, the same runs as
plain_cnn.py): 0.903 +- 0.007, 0.865 +- 0.019, 0.643 +- 0.041. The best single member (1, wide
GELU) reaches 0.914 +- 0.001, 0.878 +- 0.011, 0.730 +- 0.014: the ensembles gain about 0.01 AUC
over it and no malignant sensitivity.
"""

import os

from medjax.configs.review_ensembles import ensemble_config

MEMBERS = [
    {},
    {"model.widths": (24, 48, 96), "model.activation": "gelu"},
    {"model.kernel_size": 5, "model.activation": "elu"},
]


def get_config(arg=None):
    c, _ = ensemble_config(arg, os.path.dirname(os.path.abspath(__file__)), MEMBERS)
    return c.lock()
