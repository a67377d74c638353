"""Fine-tuning: pretrained weights in, parts of the model frozen, a separate head learning rate.

Parameters are addressed by their path in the parameter tree, "stage1_block0/conv1/kernel",
matched with regular expressions from `config.model.freeze`; the head is the top-level module
named "head" in every medjax model, with the MLP head's "head_hidden0", ... when it has them.
"""

import re

import jax
import jax.numpy as jnp
import optax

from medjax.errors import ConfigError


def _path(key_path) -> str:
    return "/".join(str(getattr(k, "key", k)) for k in key_path)


def paths(tree) -> list[str]:
    return [_path(kp) for kp, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def frozen_mask(tree, patterns) -> object:
    """A tree of bools: True where the leaf's path matches one of `patterns`."""
    compiled = [re.compile(p) for p in patterns]
    return jax.tree_util.tree_map_with_path(
        lambda kp, _: any(c.search(_path(kp)) for c in compiled), tree
    )


def check_patterns(params, patterns) -> None:
    """Every freeze pattern must match some parameter: a typo must not silently train all."""
    names = paths(params)
    for p in patterns:
        try:
            rx = re.compile(p)
        except re.error as e:
            raise ConfigError(f"config.model.freeze pattern {p!r} is not a regex: {e}") from None
        if not any(rx.search(n) for n in names):
            raise ConfigError(
                f"config.model.freeze pattern {p!r} matches no parameter; parameter paths look "
                f"like {', '.join(names[:3])}, ..., {names[-1]} (e.g. '^stem|^stage1' freezes "
                f"the stem and first stage, '^(?!head)' everything but the head)"
            )


def with_finetuning(tx, config, param_tree, make_optimizer):
    """`tx` for the body, nothing for frozen parameters, and, when
    `config.optimizer.head_learning_rate` > 0, `make_optimizer(head_lr)` for the head.
    `param_tree()` gives the parameter tree (shapes suffice); only called when needed."""
    freeze, head_lr = tuple(config.model.freeze), config.optimizer.head_learning_rate
    if not freeze and not head_lr:
        return tx
    params = param_tree()
    check_patterns(params, freeze)
    frozen = frozen_mask(params, freeze)

    def label(kp, is_frozen):
        if is_frozen:
            return "frozen"
        # the MLP head's hidden layers (config.model.head_hidden) are new too: the head's rate
        top = _path(kp).split("/")[0]
        return "head" if head_lr and re.fullmatch(r"head(_hidden\d+)?", top) else "body"

    labels = jax.tree_util.tree_map_with_path(label, frozen)
    transforms = {"body": tx, "frozen": optax.set_to_zero()}
    if head_lr:
        transforms["head"] = make_optimizer(head_lr)
    return optax.multi_transform(transforms, labels)


def keep_frozen_stats(old_stats, new_stats, patterns):
    """Batch-norm statistics of frozen layers stay as loaded instead of adapting to the batch."""
    if not patterns:
        return new_stats
    mask = frozen_mask(old_stats, patterns)
    return jax.tree.map(lambda m, o, n: jnp.where(m, o, n), mask, old_stats, new_stats)


def param_shapes(model, image_shape):
    """The parameter tree's shapes, without computing anything."""
    x = jax.ShapeDtypeStruct((1, *image_shape), jnp.float32)
    return jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)["params"]


def load_into_state(state, config, tx, sharding):
    """The state with `config.model.pretrained`'s weights (head re-initialised for a new
    class count, an RGB stem summed for grayscale input), or an ensemble's
    `config.model.member_pretrained` in its members' subtrees, a fresh optimizer state and EMA."""
    from medjax.weights import load_pretrained

    like = {"params": state.params, "batch_stats": state.batch_stats}
    if config.model.pretrained:
        like, notes = load_pretrained(
            config.model.pretrained,
            config.model.name,
            like,
            source=config.model.pretrained_source,
            layout=config.model.layout,
        )
        for note in notes:
            print(f"pretrained: {note}")
    if any(config.model.member_pretrained):
        from medjax.weights.members import load_members

        like = load_members(like, config.model)

    def replace(variables):
        params, stats = variables["params"], variables.get("batch_stats", {})
        ema = {"params": params, "batch_stats": stats} if state.ema else state.ema
        return state.replace(params=params, batch_stats=stats, opt_state=tx.init(params), ema=ema)

    return jax.jit(replace, out_shardings=sharding)(like)
