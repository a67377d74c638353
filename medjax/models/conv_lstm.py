"""ConvLSTM over the slices of a volume (N, D, H, W, C) (Shi et al. 2015), beside cnn_rnn.

Where cnn_rnn pools every slice to a vector before its LSTM, here the recurrence keeps the
slices' feature maps: each slice goes through the plain CNN's stages (cnn.conv_stages: widths,
convs_per_stage, kernel_size, pool, activation, norm; all N * D slices as one batch), and a
ConvLSTM cell, whose gates are convolutions, reads the (h, w, F) maps in slice order. Its last
hidden state, which has seen the whole volume, is averaged over (h, w) and goes through dropout
(config.model.dropout) to the Linear head.

The cell is the paper's, peepholes included (with X_t the slice's map, * a convolution and o an
elementwise product):
    i_t = sigmoid(W_xi * X_t + W_hi * H_{t-1} + W_ci o C_{t-1} + b_i)
    f_t = sigmoid(W_xf * X_t + W_hf * H_{t-1} + W_cf o C_{t-1} + b_f)
    C_t = f_t o C_{t-1} + i_t o tanh(W_xc * X_t + W_hc * H_{t-1} + b_c)
    o_t = sigmoid(W_xo * X_t + W_ho * H_{t-1} + W_co o C_t + b_o)
    H_t = o_t o tanh(C_t)
The four input and four hidden convolutions are one convolution of [X_t, H_{t-1}] (kernel
(k, k, C + F, 4F), gates in the order i, f, c, o); the peephole weights have the state's shape
(h, w, F) as in the paper, so they are created for the in-plane size of the first input. The
forget-gate bias starts at 1 (Jozefowicz et al. 2015) so early training does not forget the
first slices. Width F is config.model.rnn_hidden, the kernel config.model.kernel_size; the
recurrence runs in float32 even under bfloat16 compute, as cnn_rnn's.

The builder gets D as `image_size`; the in-plane size is checked when the model is traced.
Intermediates: the slices' stage{i} (N * D, h, w, C), "hidden" the ConvLSTM states
(N, D, h, w, F), "last_state" (N, h, w, F) (a Grad-CAM target), "pooled".
"""

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from medjax.errors import ConfigError
from medjax.models.cnn import check_cnn_config, conv_stages
from medjax.models.conv import Conv
from medjax.models.layers import pooled_head, stage_features
from medjax.models.registry import MODELS, check_input_size
from medjax.models.volume import check_in_plane

F32 = jnp.float32


def _gate_bias_init(key, shape, dtype=F32):
    """Zeros, except the forget gate's (the second quarter) at 1."""
    features = shape[0] // 4
    return jnp.zeros(shape, dtype).at[features : 2 * features].set(1.0)


class ConvLSTMCell(nn.RNNCellBase):
    """One ConvLSTM step on NHWC maps: carry (C, H), output H. Parameters: "conv" (its kernel
    over [X, H]), "bias" (4F) and "peephole" (3, h, w, F: W_ci, W_cf, W_co)."""

    features: int
    kernel_size: int = 3
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, carry, x):
        c, h = carry
        z = jnp.concatenate([x.astype(F32), h], axis=-1)
        conv = Conv(4 * self.features, self.kernel_size, dtype=F32, impl=self.conv_impl)
        gates = conv(z) + self.param("bias", _gate_bias_init, (4 * self.features,))
        gi, gf, gc, go = jnp.split(gates, 4, axis=-1)
        peep = self.param("peephole", nn.initializers.zeros, (3, *c.shape[-3:]))
        i = nn.sigmoid(gi + peep[0] * c)
        f = nn.sigmoid(gf + peep[1] * c)
        c = f * c + i * jnp.tanh(gc)
        h = nn.sigmoid(go + peep[2] * c) * jnp.tanh(c)
        return (c, h), h

    @nn.nowrap
    def initialize_carry(self, rng, input_shape):
        """Zero (C, H) for inputs of `input_shape` (N, h, w, channels)."""
        del rng  # the state starts at zero, as in the paper
        shape = (*input_shape[:-1], self.features)
        return jnp.zeros(shape, F32), jnp.zeros(shape, F32)

    @property
    def num_feature_axes(self) -> int:
        return 3  # (h, w, channels): nn.RNN scans the axis before them


class ConvLSTM(nn.Module):
    num_classes: int
    widths: Sequence[int]
    convs_per_stage: int
    kernel_size: int
    pool: str
    hidden: int
    dropout: float
    act: Callable
    norm: Any
    dtype: Any = F32
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, x, train: bool = False):
        check_in_plane("conv_lstm", x, 2 ** (len(self.widths) - 1))
        n, d = x.shape[:2]
        maps = conv_stages(self, x.reshape(n * d, *x.shape[2:]), train)
        maps = maps.reshape(n, d, *maps.shape[1:]).astype(F32)
        cell = ConvLSTMCell(self.hidden, self.kernel_size, self.conv_impl, name="conv_lstm")
        hidden = nn.RNN(cell)(maps)
        self.sow("intermediates", "hidden", hidden)
        x = stage_features(self, "last_state", hidden[:, -1])
        return pooled_head(self, jnp.mean(x, axis=(1, 2)), train)


@MODELS.register("conv_lstm")
def conv_lstm(cfg, num_classes, image_size, act, norm, dtype):
    if cfg.rnn_hidden < 1:
        raise ConfigError(f"config.model.rnn_hidden must be positive, not {cfg.rnn_hidden}")
    # The CNN's keys, at a size it cannot refuse: it pools only in-plane, checked when traced.
    check_cnn_config("conv_lstm", cfg, image_size=1 << 30)
    check_input_size("conv_lstm", image_size, 1)  # D slices
    return ConvLSTM(
        num_classes,
        tuple(cfg.widths),
        cfg.convs_per_stage,
        cfg.kernel_size,
        cfg.pool,
        cfg.rnn_hidden,
        cfg.dropout,
        act,
        norm,
        dtype,
        cfg.conv,
    )
