"""Output-level ensemble of AlexNet, MobileNetV2 and ResNet-18: each network trained separately with the
review recipe, then combined by soft voting, hard voting or stacking (`:method=`).

Question: does the review's combination of AlexNet, MobileNetV2 and ResNet-18, each trained alone on the
same data, budget and seed, beat the plain CNN (plain_cnn.py) and its own members? (results.json
lists each member's test metrics beside the ensemble's.)
Design: the scoping review's ensembles of separately trained ImageNet architectures (issue 15,
item 4), combined at the output: mean probability (soft), majority vote (hard) or a logistic
regression fitted on validation (stacking; its validation numbers are cross-validated). Members
train from scratch at 28 px; to start one from ImageNet weights, add overrides to its entry
(README, "Pretrained weights and fine-tuning").
Data: BreastMNIST by default; `:data=pneumoniamnist` or `:data=phantom`.
`:runlocal` swaps every network for a tiny CNN (widths 4-8; ReLU, GELU, ELU) so that the smoke
run takes seconds: it tests the ensemble's training, skipping and combining, not these
architectures (tests/test_models_*.py test those).
Command:
    python -m medjax.run --config experiments/review/ensemble_alexnet_mobilenetv2_resnet18.py:seed=0,method=soft \
        --workdir runs/review/ensemble_alexnet_mobilenetv2_resnet18_soft0
    python -m medjax.run --config experiments/review/ensemble_alexnet_mobilenetv2_resnet18.py:runlocal,data=phantom \
        --workdir /tmp/x
Result: not measured on real data here (each full-size member trains for tens of minutes on
the 2-core CPU); ensemble_cnns.py gives the ensembles' real-data numbers.
"""

import os

from medjax.configs.review_ensembles import TINY, ensemble_config

MEMBERS = [{"model.name": "alexnet"}, {"model.name": "mobilenet_v2"}, {"model.name": "resnet18"}]


def get_config(arg=None):
    here = os.path.dirname(os.path.abspath(__file__))
    c, _ = ensemble_config(arg, here, MEMBERS, runlocal_members=TINY)
    return c.lock()
