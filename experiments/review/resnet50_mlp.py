"""ResNet-50 + MLP head: the review's "ResNet-50 + MLP" studies, a ResNet-50 whose linear
classifier is replaced by hidden layers (512, 256) with ReLU and dropout before the last Linear
layer ("head"; the hidden ones are "head_hidden0", "head_hidden1", so config.model.freeze can
address them: "^(?!head)" trains the whole MLP head alone).

Question: what does a ResNet-50 with an MLP head reach on BreastMNIST with the review recipe
(medjax.configs.review), against the plain CNN?
Study design: ResNet-50 backbone (small-image stem at 28 px, trained from scratch here; pass
--config.model.pretrained=resnet50.pth to fine-tune ImageNet weights, as most of those studies
did) + MLP head (dropout 0.2 before each Linear layer), trained end to end.
Data: BreastMNIST by default; `:data=pneumoniamnist` or `:data=phantom` (generated, no files).
Command:
    python -m medjax.run --config experiments/review/resnet50_mlp.py:seed=0 \
        --workdir runs/review/resnet50_mlp0 --config.log.plots=False
    python -m medjax.run --config experiments/review/resnet50_mlp.py:runlocal,data=phantom \
        --workdir /tmp/x   # a ResNet-18 stands in
Result: not measured on real data in this round (a ResNet-50 for 20 epochs is beyond the
shared CPU budget); the MLP head's BreastMNIST result on the plain CNN is cnn_svm.py:head=mlp.
"""

from medjax.configs.review import review_config


def get_config(arg=None):
    c, arg = review_config(arg)
    c.model.name = "resnet50"
    c.model.head = "mlp"
    c.model.head_hidden = (512, 256)
    if arg.runlocal:  # seconds on 2 cores: a ResNet-18 stands in for the ResNet-50 (which
        # compiles for minutes on a shared CPU), with the same MLP head
        c.model.name = "resnet18"
    return c.lock()
