"""CNN + self-attention transformer: does letting every position of the plain CNN's final
feature map attend to every other help it on small medical images?

Question: the review's "self-attention transformer" hybrids put transformer layers on a CNN's
feature map; here the plain CNN's own stages (16, 32, 64 channels, two 3x3 convs each, max
pooling; 28 px -> a 7 x 7 map) feed 49 tokens, projected to width 64 with learned position
embeddings, to 2 pre-norm encoder blocks (4 heads, an MLP of 256 with the recipe's ReLU, as the
original Transformer's); the averaged tokens go to the head. Everything else is the plain CNN's recipe (medjax.configs.review), so the comparison
with experiments/review/plain_cnn.py differs only in the attention layers.
Study design: "CNN + self-attention transformer" (medjax.models.vit_variants.CNNAttention).
Data: BreastMNIST (546/78/156, malignant 27%) by default; `:data=pneumoniamnist` or
`:data=phantom` (generated, no files).
Command:
    python -m medjax.run --config experiments/review/cnn_self_attention.py:seed=0 --workdir runs/review/cnnatt0
    python -m medjax.run --config experiments/review/cnn_self_attention.py:runlocal,data=phantom --workdir /tmp/x
Result (BreastMNIST test, seeds 0-2, mean +- SD; 2-core CPUs shared with other jobs): AUC
0.905 +- 0.031 (0.938, 0.898, 0.878), accuracy 0.882 +- 0.007, malignant sensitivity 0.746 +-
0.037, balanced accuracy 0.839 +- 0.016, against the plain CNN's 0.903 +- 0.007, 0.865 +- 0.019,
0.643 +- 0.041, 0.795 +- 0.025: it ranks no better (seed 0's 0.938 was luck), but finds about
4 more of the 42 malignant images at the argmax.
"""

from medjax.configs.review import review_config


def get_config(arg=None):
    c, _ = review_config(arg)
    c.model.name = "cnn_attention"
    c.model.transformer_width = 64
    c.model.transformer_depth = 2
    c.model.transformer_heads = 4
    return c.lock()
