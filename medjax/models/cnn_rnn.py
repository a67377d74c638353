"""CNN-RNN for volumes (N, D, H, W, C): a 2D CNN on every slice, then an LSTM or GRU over slices.

The encoder is medjax.models.cnn.CNN (config.model.widths, convs_per_stage, kernel_size, pool,
activation, norm; named 'encoder'), applied to all N * D slices as one batch; its globally pooled
features (the input of its 'head', taken by ensemble.backbone_features, so the encoder's head
has no parameters) form a sequence (N, D, F). An `nn.RNN` of `nn.OptimizedLSTMCell` or
`nn.GRUCell` (config.model.rnn, width config.model.rnn_hidden, the cell named 'rnn') reads the slices in
order, and its last hidden state, which has seen the whole volume, goes through dropout
(config.model.dropout) to the Linear head. (The mean of the hidden states over slices would
weigh early slices more evenly; the last state is the usual many-to-one choice.) The recurrence
runs in float32 even under bfloat16 compute: its state accumulates over the slices.

The builder gets D as `image_size` (at least one slice is needed); the in-plane size is checked
when the model is traced. Intermediates: the encoder's stages per slice (under 'encoder', shape
(N * D, h, w, C)), "slices" (N, D, F), "hidden" the RNN states (N, D, rnn_hidden), "pooled".
"""

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from medjax.errors import ConfigError
from medjax.models.cnn import CNN
from medjax.models.ensemble import backbone_features
from medjax.models.layers import pooled_head
from medjax.models.registry import MODELS, check_input_size
from medjax.models.volume import check_in_plane

CELLS = {"lstm": nn.OptimizedLSTMCell, "gru": nn.GRUCell}


class CNNRNN(nn.Module):
    num_classes: int
    widths: Sequence[int]
    convs_per_stage: int
    kernel_size: int
    pool: str
    rnn: str
    rnn_hidden: int
    dropout: float
    act: Callable
    norm: Any
    dtype: Any = jnp.float32
    conv_impl: str = "auto"
    head_hidden: tuple = ()  # widths of hidden Linear layers before 'head' (pooled_head)

    @nn.compact
    def __call__(self, x, train: bool = False):
        check_in_plane("cnn_rnn", x, 2 ** (len(self.widths) - 1))
        n, d = x.shape[:2]
        encoder = CNN(
            1,  # the head is never called: backbone_features returns its input
            self.widths,
            self.convs_per_stage,
            self.kernel_size,
            self.pool,
            0.0,
            self.act,
            self.norm,
            self.dtype,
            self.conv_impl,
            name="encoder",
        )
        feats = backbone_features(encoder, x.reshape(n * d, *x.shape[2:]), train)
        feats = feats.reshape(n, d, -1)
        self.sow("intermediates", "slices", feats)
        # Created here, the cell belongs to this module: its parameters live under 'rnn'.
        cell = CELLS[self.rnn](features=self.rnn_hidden, dtype=jnp.float32, name="rnn")
        hidden = nn.RNN(cell)(feats)
        self.sow("intermediates", "hidden", hidden)
        x = hidden[:, -1]
        return pooled_head(self, x, train)


@MODELS.register("cnn_rnn")
def cnn_rnn(cfg, num_classes, image_size, act, norm, dtype):
    if cfg.rnn not in CELLS:
        raise ConfigError(f"config.model.rnn must be 'lstm' or 'gru', not {cfg.rnn!r}")
    if cfg.rnn_hidden < 1:
        raise ConfigError(f"config.model.rnn_hidden must be positive, not {cfg.rnn_hidden}")
    if cfg.pool not in ("max", "avg"):
        raise ConfigError(f"config.model.pool must be 'max' or 'avg', not {cfg.pool!r}")
    if not cfg.widths or cfg.convs_per_stage < 1 or cfg.kernel_size < 1 or cfg.kernel_size % 2 == 0:
        raise ConfigError(
            "config.model.widths and convs_per_stage must be positive and "
            "config.model.kernel_size odd (3, 5, 7: padding keeps the size)"
        )
    check_input_size("cnn_rnn", image_size, 1)  # D slices; the CNN pools only in-plane
    return CNNRNN(
        num_classes,
        tuple(cfg.widths),
        cfg.convs_per_stage,
        cfg.kernel_size,
        cfg.pool,
        cfg.rnn,
        cfg.rnn_hidden,
        cfg.dropout,
        act,
        norm,
        dtype,
        cfg.conv,
    )
