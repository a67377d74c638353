"""EfficientNet + VGG16 features + an extreme learning machine: the review's study that
concatenated the features of two CNNs and classified them with an ELM.

Question: what do an EfficientNet-B0 and a VGG16, trained jointly as one feature-level
ensemble (medjax.models.ensemble, combine="concat"), reach when their concatenated pooled
features are classified by an ELM (medjax.heads.elm: random tanh hidden layer, ridge output
weights in closed form, hidden size and ridge chosen on validation)?
Study design: feature-level ensemble of EfficientNet-B0 and VGG16 (VGG's fc7 features, as
torchvision's usual feature extractor), its own linear head trained end to end to give the
features, then the ELM fitted on the training features of the checkpoint validation chose;
the ensemble's own head's metrics stay under "network_head" in results.json. The study used
ImageNet weights: pass them with --config.model.pretrained (an ensemble loads each member's).
Data: BreastMNIST by default; `:data=pneumoniamnist` or `:data=phantom` (generated, no files).
Command:
    python -m medjax.run --config experiments/review/efficientnet_vgg16_elm.py:seed=0 \
        --workdir runs/review/effnet_vgg_elm0 --config.log.plots=False
    python -m medjax.run --config experiments/review/efficientnet_vgg16_elm.py:runlocal,data=phantom \
        --workdir /tmp/x   # two tiny CNNs stand in for the members
Result: not measured on real data in this round (two ImageNet-size backbones for 20 epochs
are beyond the shared CPU budget); the ELM head's BreastMNIST result on the plain CNN is
cnn_svm.py:head=elm.
"""

from medjax.configs.review import review_config


def get_config(arg=None):
    c, arg = review_config(arg)
    c.model.name = "ensemble"
    c.model.members = ("efficientnet_b0", "vgg16")
    c.model.combine = "concat"
    c.model.head = "elm"
    if arg.runlocal:  # seconds on 2 cores: two tiny CNNs stand in for the two backbones, so the
        # smoke run covers the same ensemble -> concat -> ELM path (the real members compile
        # for minutes on a shared CPU)
        c.model.members = ("cnn", "cnn")
        c.model.widths = (4, 8)
    return c.lock()
