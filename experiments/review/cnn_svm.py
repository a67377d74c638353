"""CNN features + a classical classifier: the review's hybrid design in which a trained CNN's
pooled features are fed to an SVM (or logistic regression, random forest, k-NN, ELM), and the
MLP-head variant, all on the plain CNN of experiments/review/plain_cnn.py.

Question: does replacing the plain CNN's linear head by a classifier fitted on its features
(`:head=svm`, the default; svm_linear, logreg, rf, knn, elm) or by a trained MLP head
(`:head=mlp`, hidden layers (512, 256)) change what the same network reaches?
Study design: "CNN + SVM" hybrids (features of the trained network, classical classifier fitted
on the training features, hyperparameter chosen on validation, tested once); the fitted heads
use the checkpoint the network's own validation chose, so `results.json` keeps the network's
own linear head's metrics under "network_head" beside the head's ("val"/"test").
Data: BreastMNIST (546/78/156, malignant 27%) by default; `:data=pneumoniamnist` or
`:data=phantom` (generated, no files).
Command:
    python -m medjax.run --config experiments/review/cnn_svm.py:seed=0,head=svm \
        --workdir runs/review/cnn_svm0 --config.log.plots=False
    python -m medjax.run --config experiments/review/cnn_svm.py:runlocal,data=phantom,head=knn \
        --workdir /tmp/x
Result: see the README's "The review's designs" (mean +- SD over seeds 0-2).
"""

from medjax.configs.review import review_config
from medjax.heads import HEADS

MLP_HIDDEN = (512, 256)


def get_config(arg=None):
    c, arg = review_config(arg, head="svm")
    HEADS.get(arg.head)  # an unknown name lists the valid ones
    c.model.head = arg.head
    if arg.head == "mlp":
        c.model.head_hidden = MLP_HIDDEN
    return c.lock()
