"""The "improved ViT": does a convolutional stem instead of ViT's patchify layer (Xiao et al.
2021) make a small transformer competitive with the plain CNN on small medical images?

Question: the review's ViT studies that modified the stem report easier training; here a small
ViT whose 4 x 4 patches are made by two 3x3 stride-2 conv-BN-GELU layers (32, 64 channels) and a
1x1 conv, then 4 pre-norm encoder blocks (width 64, 4 heads, GELU MLP of 256) on the 7 x 7
tokens and a class token, is trained with the plain CNN's recipe (medjax.configs.review: same
data, augmentation, Adam 1e-3 with cosine decay, 20 epochs, batch 32, seeds), so the comparison
with experiments/review/plain_cnn.py differs only in the network.
Study design: "improved ViT" / ViT with a convolutional stem (medjax.models.vit_variants).
Data: BreastMNIST (546/78/156, malignant 27%) by default; `:data=pneumoniamnist` or
`:data=phantom` (generated, no files).
Command:
    python -m medjax.run --config experiments/review/vit_conv_stem.py:seed=0 --workdir runs/review/vitc0
    python -m medjax.run --config experiments/review/vit_conv_stem.py:runlocal,data=phantom --workdir /tmp/x
Result (BreastMNIST test, seeds 0-2, mean +- SD; 2-core CPUs shared with other jobs): AUC
0.856 +- 0.011, accuracy 0.846 +- 0.017, malignant sensitivity 0.563 +- 0.084, balanced accuracy
0.757 +- 0.036, against the plain CNN's 0.903 +- 0.007, 0.865 +- 0.019, 0.643 +- 0.041, 0.795 +-
0.025: on 546 training images this small transformer ranks worse than the CNN.
"""

from medjax.configs.review import review_config


def get_config(arg=None):
    c, _ = review_config(arg)
    c.model.name = "vit_conv_stem"
    c.model.patch_size = 4  # two stride-2 convs: 28 px -> 7 x 7 tokens
    c.model.transformer_width = 64
    c.model.transformer_depth = 4
    c.model.transformer_heads = 4
    c.model.activation = "gelu"
    c.model.dropout = 0.1  # inside the blocks too (vit.py); the plain CNN's 0.2 is head-only
    return c.lock()
