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
Result (BreastMNIST, seeds 0-2, test, mean +- SD; a 2-core CPU shared with other jobs): the
network's own linear head (= plain_cnn.py) reaches AUC 0.903 +- 0.007, accuracy 0.865 +- 0.019,
malignant sensitivity 0.643 +- 0.041. No head changes AUC beyond the seed spread except the RBF
SVM, which lowers it: svm 0.874 +- 0.021, svm_linear 0.904 +- 0.004, logreg 0.903 +- 0.008,
rf 0.906 +- 0.008, knn 0.893 +- 0.006, elm 0.894 +- 0.015, mlp 0.903 +- 0.021. At the default
threshold svm_linear, logreg, rf, elm and the MLP head find more of the 42 malignant images
(sensitivity 0.706-0.730, SD 0.024-0.050, accuracy 0.874-0.882); svm (0.675) and knn (0.667)
stay near the network. The fitted heads were measured by refitting each on the features of
seed S's svm run: the network a fitted head sees is trained identically whatever the head,
and the refit reproduced the three full svm runs' results exactly.
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
