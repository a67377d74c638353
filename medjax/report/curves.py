"""Learning curves from metrics.jsonl rows, for runs whose workdir has no plots/ of its own."""

import io


def draw(rows: list[dict]) -> bytes:
    """A PNG: training loss (left) and the accuracy-like metrics of training and validation
    (right) against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [r for r in rows if "split" not in r]
    val = [r for r in rows if r.get("split") == "val"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    left.plot([r["step"] for r in train], [r.get("loss") for r in train], label="train loss")
    left.set_xlabel("step")
    left.set_ylabel("loss")
    left.legend()
    for name, source, style in (
        ("accuracy", train, "-"),
        ("accuracy", val, "--"),
        ("balanced_accuracy", val, "--"),
        ("auc", val, "--"),
    ):
        points = [(r["step"], r[name]) for r in source if name in r]
        if points:
            label = f"{'train' if source is train else 'val'} {name}"
            right.plot(*zip(*points, strict=True), style, marker=".", label=label)
    right.set_xlabel("step")
    right.set_ylim(0, 1.02)
    right.legend(fontsize=8)
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=100)
    plt.close(fig)
    return out.getvalue()
