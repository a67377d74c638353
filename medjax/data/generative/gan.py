"""A small class-conditional DCGAN for grey (or few-channel) 2-D images, in Flax Linen.

The generator maps (z, class) to an image in [-1, 1]: the class embedding is concatenated to z,
a dense layer makes an (H/4, W/4) map, and two stride-2 transposed convolutions double it twice.
The discriminator is a projection discriminator (Miyato & Koyama 2018): two stride-2
convolutions, then a linear score plus the inner product of the class embedding with the
features, so the class enters as a learned direction in feature space rather than as an extra
input channel. The loss is the hinge loss (`loss="hinge"`) or the non-saturating logistic loss
of the original GAN (`loss="bce"`).

Training draws each real batch class-balanced (every class equally often, whatever its share of
the training split), because it is the minority classes whose images are wanted. Everything is a
pure function of the seed: step t uses the key fold_in(seed key, t), so training from scratch
twice gives the same weights.
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

LOSSES = ("hinge", "bce")


@dataclasses.dataclass(frozen=True)
class GanSpec:
    steps: int = 2000  # generator (and discriminator) updates
    batch_size: int = 64
    width: int = 32  # channels of the first discriminator / last generator layer
    latent: int = 64  # size of z
    lr: float = 2e-4
    loss: str = "hinge"


class Generator(nn.Module):
    image_shape: tuple  # (H, W, C), H and W multiples of 4
    num_classes: int
    width: int = 32

    @nn.compact
    def __call__(self, z, y):
        h, w, c = self.image_shape
        x = jnp.concatenate([z, nn.Embed(self.num_classes, z.shape[-1])(y)], -1)
        x = nn.Dense(h // 4 * w // 4 * 2 * self.width)(x)
        x = x.reshape(-1, h // 4, w // 4, 2 * self.width)
        x = nn.relu(nn.LayerNorm()(x))
        x = nn.ConvTranspose(self.width, (4, 4), strides=(2, 2), padding="SAME")(x)
        x = nn.relu(nn.LayerNorm()(x))
        x = nn.ConvTranspose(c, (4, 4), strides=(2, 2), padding="SAME")(x)
        return jnp.tanh(x)


class Discriminator(nn.Module):
    num_classes: int
    width: int = 32

    @nn.compact
    def __call__(self, x, y):
        x = nn.leaky_relu(nn.Conv(self.width, (4, 4), strides=(2, 2))(x), 0.2)
        x = nn.leaky_relu(nn.Conv(2 * self.width, (4, 4), strides=(2, 2))(x), 0.2)
        f = x.reshape(x.shape[0], -1)
        projection = jnp.sum(nn.Embed(self.num_classes, f.shape[-1])(y) * f, -1)
        return nn.Dense(1)(f)[:, 0] + projection


def _losses(kind: str):
    """(discriminator loss(real scores, fake scores), generator loss(fake scores))."""
    if kind == "hinge":
        d = lambda r, f: jnp.mean(nn.relu(1 - r)) + jnp.mean(nn.relu(1 + f))
        return d, lambda f: -jnp.mean(f)
    d = lambda r, f: jnp.mean(nn.softplus(-r)) + jnp.mean(nn.softplus(f))
    return d, lambda f: jnp.mean(nn.softplus(-f))


@dataclasses.dataclass(frozen=True)
class Trained:
    generator: Generator
    params: dict  # the generator's parameters
    spec: GanSpec
    final_losses: dict  # the last step's {"d": ..., "g": ...}


def train_gan(images: np.ndarray, labels: np.ndarray, num_classes: int, spec: GanSpec, seed: int):
    """Train on `images` (N, H, W, C) in [-1, 1] with labels (N,); a pure function of seed."""
    gen = Generator(tuple(images.shape[1:]), num_classes, spec.width)
    disc = Discriminator(num_classes, spec.width)
    d_loss, g_loss = _losses(spec.loss)
    tx = optax.adam(spec.lr, b1=0.5, b2=0.999)  # DCGAN's settings
    key = jax.random.key(seed)
    k_g, k_d, key = jax.random.split(key, 3)
    z0, y0 = jnp.zeros((1, spec.latent)), jnp.zeros((1,), jnp.int32)
    g_params = gen.init(k_g, z0, y0)["params"]
    d_params = disc.init(k_d, jnp.zeros((1, *images.shape[1:])), y0)["params"]
    opt = (tx.init(g_params), tx.init(d_params))
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    # class-balanced draws: each example weighted by 1 / its class's count
    weights = jnp.asarray(1.0 / counts[labels] / np.count_nonzero(counts), jnp.float32)
    # arguments, not closed-over constants: XLA would embed the whole training set in the program
    data = (jnp.asarray(images, jnp.float32), jnp.asarray(labels, jnp.int32), weights)

    @jax.jit
    def step(g_params, d_params, opt, t, data):
        images, targets, weights = data
        k_x, k_z = jax.random.split(jax.random.fold_in(key, t))
        idx = jax.random.choice(k_x, len(targets), (spec.batch_size,), p=weights)
        real, y = images[idx], targets[idx]
        z = jax.random.normal(k_z, (spec.batch_size, spec.latent))

        def d_objective(dp):
            fake = gen.apply({"params": g_params}, z, y)
            score = lambda x: disc.apply({"params": dp}, x, y)
            return d_loss(score(real), score(jax.lax.stop_gradient(fake)))

        def g_objective(gp):
            return g_loss(disc.apply({"params": d_params}, gen.apply({"params": gp}, z, y), y))

        ld, grads = jax.value_and_grad(d_objective)(d_params)
        upd, opt_d = tx.update(grads, opt[1], d_params)
        d_params = optax.apply_updates(d_params, upd)
        lg, grads = jax.value_and_grad(g_objective)(g_params)
        upd, opt_g = tx.update(grads, opt[0], g_params)
        g_params = optax.apply_updates(g_params, upd)
        return g_params, d_params, (opt_g, opt_d), {"d": ld, "g": lg}

    losses = {}
    bar = tqdm(range(spec.steps), desc="gan generator", leave=False, mininterval=1.0)
    for t in bar:
        g_params, d_params, opt, losses = step(g_params, d_params, opt, t, data)
        if t % 100 == 0 or t == spec.steps - 1:
            bar.set_postfix(d=f"{float(losses['d']):.3f}", g=f"{float(losses['g']):.3f}")
    final = {k: float(v) for k, v in losses.items()}
    return Trained(gen, jax.device_get(g_params), spec, final)


def sample(trained: Trained, label: int, n: int, seed: int) -> np.ndarray:
    """n images of class `label` in [-1, 1]; a pure function of (weights, label, n, seed)."""
    key = jax.random.fold_in(jax.random.key(seed), label)
    z = jax.random.normal(key, (n, trained.spec.latent))
    y = jnp.full((n,), label, jnp.int32)
    fn = jax.jit(lambda p, z, y: trained.generator.apply({"params": p}, z, y))
    return np.asarray(fn(trained.params, z, y))
