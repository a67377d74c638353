"""The table tools/gpu_bench.sh prints last: its JSON lines side by side, as markdown.

python tools/gpu_bench_summary.py OUTDIR [WALL_SECONDS]
"""

import datetime
import json
import pathlib
import sys


def rows(path: pathlib.Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def cell(value, digits=1) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def step_table(steps: list[dict]) -> list[str]:
    out = [
        "| framework | model | batch | images/s | step ms | MFU | TFLOP/s | compile s | "
        "host batch ms | loop images/s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in steps:
        mfu = r.get("mfu")
        out.append(
            "| "
            + " | ".join(
                [
                    r.get("framework", "jax"),
                    r["model"],
                    cell(r["batch_size"]),
                    cell(r["train_images_per_s"]),
                    cell(r["train_step_ms"]),
                    "-" if mfu is None else f"{100 * mfu:.1f}%",
                    cell(r.get("step_tflops_per_s")),
                    cell(r.get("compile_s")),
                    cell(r.get("input_batch_ms")),
                    cell(r.get("train_loop_images_per_s")),
                ]
            )
            + " |"
        )
    return out


def input_table(inputs: list[dict]) -> list[str]:
    out = [
        "| pixels | batch | images/s | index ms | gather ms | transfer ms | MB/batch | "
        "outpaces the ResNet-50 step |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in inputs:
        keys = ("input_index_ms", "input_gather_ms", "input_transfer_ms", "input_mb_per_batch")
        out.append(
            f"| {r['input_dtype']} | {r['batch_size']} | {cell(r['input_images_per_s'])} | "
            + " | ".join(cell(r.get(k), 2) for k in keys)
            + f" | {cell(r.get('input_outpaces_step'))} |"
        )
    return out


def main(outdir: str, wall: str = "") -> None:
    root = pathlib.Path(outdir)
    steps = rows(root / "jax.jsonl") + rows(root / "torch.jsonl")
    inputs = rows(root / "input.jsonl")
    device = next((r["device_kind"] for r in steps + inputs if r.get("device_kind")), "unknown")
    lines = [f"medjax GPU benchmark, {datetime.date.today()}, {device}", ""]
    lines += step_table(steps) if steps else ["no train step was measured (see log.txt)"]
    lines += [""] + (input_table(inputs) if inputs else ["the input path was not measured"])
    jax_row = next((r for r in rows(root / "jax.jsonl")), {})
    if jax_row:
        lines += ["", f"jax {jax_row.get('jax')}; host {jax_row.get('host_cpu')}"]
    if wall:
        lines.append(f"wall time {wall} s")
    print("\n".join(lines))


if __name__ == "__main__":
    main(*sys.argv[1:])
