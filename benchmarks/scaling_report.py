"""Markdown of benchmarks/scaling.py's results: tables, and sentences read off the numbers.

Every sentence about growth is computed from the measurements (marginal seconds per
1,000 rows between sizes, memory ratios), so a rerun on another machine never keeps a
claim its numbers do not show.
"""

from __future__ import annotations

from typing import Any

from common import md_table

STEPS = ("inspect", "embed", "train", "lookup", "epoch", "outside", "predict")
LABELS = {
    "inspect": "inspect (`crossfuse inspect --json`)",
    "embed": "embed: frozen encoders → empty cache",
    "train": "train: 1 epoch from the cache (process total)",
    "lookup": "↳ cache look-up of every cell (fit_summary encode_seconds)",
    "epoch": "↳ the epoch (fit_summary epoch_seconds)",
    "outside": "↳ outside the training loop (total − fit_summary train_seconds)",
    "predict": "predict (`--chunk-rows 5000`)",
}
SHORT = {"inspect": "inspect", "embed": "embed", "train": "train (process total)",
         "lookup": "cache look-up", "epoch": "the epoch", "outside": "train outside the loop",
         "predict": "predict"}  # fmt: skip
NOTES = [
    "inspect is given no recipe, so it decodes every cell with the default data config "
    "(audio resampled to 16 kHz, 64 mel bands), not the recipe's (8 kHz, 40 bands).",
    "embed encodes each distinct cell once: every row's image, but at most 3,000 audio "
    "clips; predict runs both encoders on every row's media.",
    "train outside the loop is what fit_summary train_seconds leaves out: imports, "
    "reading the table, schema inference, fitting the preprocessing, the validation "
    "metrics after training and saving the model (the cache look-up, which hashes every "
    "media file, is inside train_seconds).",
]


def seconds(cell: dict[str, Any], step: str) -> float:
    """Wall seconds of ``step``; ``epoch`` and ``outside`` come from the training summary."""
    summary = cell["train"]["fit_summary"]
    if step == "epoch":
        return float(summary["epoch_seconds"][0])
    if step == "lookup":
        return float(summary["encode_seconds"])
    if step == "outside":
        return float(cell["train"]["seconds"]) - float(summary["train_seconds"])
    return float(cell[step]["seconds"])


def marginal(by: dict[str, Any], step: str, n0: int, n1: int) -> float:
    """Extra wall seconds per extra 1,000 rows from ``n0`` to ``n1`` rows."""
    return (seconds(by[str(n1)], step) - seconds(by[str(n0)], step)) / ((n1 - n0) / 1000)


def kilo(n: int) -> str:
    return f"{n / 1000:g}k"


def growth(costs: list[float]) -> str:
    """How the marginal cost changes from the first to the last interval of N."""
    if len(costs) < 2 or costs[0] <= 0:
        return ""
    ratio = costs[-1] / costs[0]
    if ratio > 1.33:
        return ": extra rows get dearer as N grows (superlinear)"
    if ratio < 0.75:
        return ": extra rows get cheaper as N grows (sublinear)"
    return ": linear in N on top of a fixed cost"


def observations(payload: dict[str, Any]) -> list[str]:
    """Per step, the marginal cost per 1,000 rows between sizes and the memory growth."""
    by, rows, base = payload["by_rows"], payload["rows"], payload["baseline"]
    n0, n1 = rows[0], rows[-1]
    lines = [
        f"Every step is a fresh process: `crossfuse --help` alone takes {base['seconds']:.1f} s "
        f"wall and {base['peak_mib']:.0f} MiB (imports); that fixed cost is in every cell."
    ]
    for step in STEPS if n1 > n0 else ():
        pairs = list(zip(rows, rows[1:], strict=False))
        costs = [marginal(by, step, a, b) for a, b in pairs]
        each = ", ".join(
            f"{c:.3f} s ({kilo(a)}→{kilo(b)})" for c, (a, b) in zip(costs, pairs, strict=True)
        )
        text = f"{SHORT[step]}: each extra 1,000 rows cost {each}{growth(costs)}"
        if step in by[str(n0)]:
            m0, m1 = by[str(n0)][step]["peak_mib"], by[str(n1)][step]["peak_mib"]
            per_k = (m1 - m0) / ((n1 - n0) / 1000)
            text += (
                f"; peak memory {m0:.0f} → {m1:.0f} MiB ({per_k:+.2f} MiB per 1,000 rows, "
                f"×{m1 / m0:.2f})"
            )
        lines.append(text + ".")
    if n1 > n0:
        a = rows[-2]
        order = sorted(
            ("inspect", "embed", "train", "predict"), key=lambda st: -marginal(by, st, a, n1)
        )
        lines.append(
            f"Dearest per extra 1,000 rows ({kilo(a)}→{kilo(n1)}): "
            + " > ".join(f"{st} {marginal(by, st, a, n1):.2f} s" for st in order)
            + "."
        )
    check = payload.get("default_threads_inspect")
    if check:
        mine = by[str(check["rows"])]["inspect"]
        lines.append(
            f"Threads: inspect of {check['rows']:,} rows took {check['seconds']:.1f} s wall "
            f"({check['cpu_seconds']:.1f} s CPU) with torch's default intra-op threads, "
            f"against {mine['seconds']:.1f} s ({mine['cpu_seconds']:.1f} s CPU) with "
            f"{payload['step_threads']} thread(s); 1-minute load averages at their starts "
            f"{check['load_before']:.1f} and {mine['load_before']:.1f} on "
            f"{payload.get('cpus', '?')} CPUs."
        )
    return lines


def tables(payload: dict[str, Any]) -> list[str]:
    """Wall/peak per step and N; seconds per 1,000 rows; CPU seconds."""
    by, rows = payload["by_rows"], payload["rows"]
    pairs = list(zip(rows, rows[1:], strict=False))
    head = ["step", *(f"{n:,} rows" for n in rows)]
    main, per_k, cpu = [], [], []
    for step in STEPS:
        cells = [by[str(n)] for n in rows]
        measured = step in cells[0]  # epoch and outside are parts of the train step
        main.append(
            [LABELS[step]]
            + [
                f"{seconds(c, step):.1f} s / {c[step]['peak_mib']:.0f} MiB"
                if measured
                else f"{seconds(c, step):.2f} s"
                for c in cells
            ]
        )
        per_k.append(
            [LABELS[step]]
            + [f"{seconds(c, step) / (n / 1000):.3f}" for c, n in zip(cells, rows, strict=True)]
            + [f"{marginal(by, step, a, b):.3f}" for a, b in pairs]
        )
        if measured:
            cpu.append([LABELS[step]] + [f"{c[step]['cpu_seconds']:.1f}" for c in cells])
    return [
        "Cells: wall time / peak resident memory of the step's process.",
        md_table(head, main),
        "Wall seconds per 1,000 rows at each size, then per extra 1,000 rows between sizes "
        "(marginal: the fixed start-up cost drops out):",
        md_table(head + [f"marginal {kilo(a)}→{kilo(b)}" for a, b in pairs], per_k),
        "CPU seconds (user + system of the step's process, which other jobs on the "
        "machine disturb less than wall time):",
        md_table(head, cpu),
    ]


def markdown(payload: dict[str, Any], machine: dict[str, Any]) -> str:
    """The whole results page: setup, tables, predict memory ratio, findings, DDP."""
    by, rows = payload["by_rows"], payload["rows"]
    n0, n1 = rows[0], rows[-1]
    p0, p1 = by[str(n0)]["predict"]["peak_mib"], by[str(n1)]["predict"]["peak_mib"]
    encoded = "; ".join(
        f"{n:,} rows: "
        + ", ".join(f"{c} {v['encoded']:,}" for c, v in by[str(n)]["embed"]["cache"].items())
        for n in rows
    )
    accuracy = ", ".join(
        f"{n:,} rows {by[str(n)]['train']['fit_summary']['valid_accuracy']:.3f}" for n in rows
    )
    threads = payload.get("step_threads")
    parts = [
        f"# Scaling with rows ({', '.join(f'{n:,}' for n in rows)})",
        "Each row has its own image: an MNIST digit (the t10k set, reused every 10,000 rows) "
        "with the row number's bits stamped into its blank top pixel row, written as a "
        "28×28 PNG, so the content-addressed embedding cache encodes every row. Audio is "
        "**reused**: row i takes an AV-MNIST clip of its digit (3,000 clips), so the audio "
        "encoder runs at most 3,000 times whatever N. A numeric column `x` = digit + unit "
        "Gaussian noise (alone it allows about 44% accuracy at best) and the digit label "
        "complete the table. Encoders: `image-cnn` (widths 32, 64, dim 64) and "
        "`audio-cnn-gru` (channels 16, 32), both `finetune: frozen` with their seeded random "
        "weights (not the `pretrained` preset's EfficientNet); trainable: the tabular MLP, "
        "concat fusion (hidden 64) and the head; batch size "
        f"{payload['recipe']['train']['batch_size']}. Full recipe in scaling.json.",
        f"Machine: {machine['cpus']} CPUs shared with other jobs, torch {machine['torch']}, "
        f"Python {machine['python']}. Steps ran with "
        + (
            f"OMP_NUM_THREADS={threads} (`--threads`)"
            if threads
            else "torch's default intra-op threads"
        )
        + f"; {payload['repeats']} run(s) per step, the fastest kept. Each step is its own "
        "process; its peak RSS is `getrusage(RUSAGE_CHILDREN).ru_maxrss` read by a fresh "
        "intermediate process once the step has ended, so it is that step's maximum alone.",
        efficientnet_note(payload),
        *tables(payload),
        f"**predict peak memory, {n1:,} vs {n0:,} rows: ×{p1 / p0:.2f}** ({p0:.0f} → "
        f"{p1:.0f} MiB; acceptance ≤ 1.5×: {'met' if p1 <= 1.5 * p0 else 'NOT met'}).",
        f"Cells encoded by the embed step: {encoded}. Validation accuracy after the one "
        f"epoch: {accuracy} (the frozen encoders keep random weights; this benchmark measures "
        "cost, the accuracy only shows that training works).",
        "## What the numbers show\n\n" + "\n".join(f"- {s}" for s in observations(payload)),
        "How to read them:\n\n" + "\n".join(f"- {s}" for s in NOTES),
        ddp_section(payload.get("ddp")),
        f"The whole run took {payload['total_seconds'] / 60:.1f} min. Reproduce: "
        "`python benchmarks/scaling.py` (media and tables stay in --work, default "
        "/tmp/scaling, and are reused). `load_before` in scaling.json is the 1-minute load "
        "average when each step started.",
    ]
    return "\n\n".join(p for p in parts if p) + "\n"


def efficientnet_note(payload: dict[str, Any]) -> str:
    """Why the image encoder is image-cnn: the EfficientNet embed time on the smallest table."""
    eff = payload.get("efficientnet_embed")
    if not eff:
        return ""
    n, n1 = eff["rows"], payload["rows"][-1]
    cnn = payload["by_rows"][str(n)]["embed"]
    return (
        f"Encoder choice: on the {n:,}-row table the embed step took {eff['seconds']:.1f} s "
        f"wall / {eff['peak_mib']:.0f} MiB with the `pretrained` preset's frozen "
        "EfficientNet-Lite0 as the image encoder (RGB at its native 224×224), against "
        f"{cnn['seconds']:.1f} s / {cnn['peak_mib']:.0f} MiB with image-cnn; scaled linearly "
        "that is about "
        f"{eff['seconds'] * n1 / n / 60:.0f} min for {n1:,} rows, so image-cnn is used."
    )


def ddp_section(ddp: dict[str, Any] | None) -> str:
    if not ddp:
        return "## DDP\n\nNot run (`--skip-ddp`)."
    if "error" in ddp:
        first = ddp["error"].splitlines()[0]
        return f"## DDP\n\nFailed (details in scaling.json): `{first}`"
    rows = [
        [d, f"{r['seconds']:.1f}", " / ".join(f"{x:.2f}" for x in r.get("epoch_seconds", [])),
         f"{r['peak_tree_mib']:.0f}", r["max_processes"], f"{r['valid_accuracy']:.3f}"]
        for d, r in ddp["devices"].items()
    ]  # fmt: skip
    head = [
        "processes", "wall s", "epoch s (each)", "peak RSS, process tree MiB",
        "processes seen", "valid acc",
    ]  # fmt: skip
    return (
        f"## DDP on CPU (gloo), {ddp['rows']:,} rows, {ddp['epochs']} epochs from the cache\n\n"
        + md_table(head, rows)
        + "\n\n`crossfuse train --devices N --strategy ddp` with the same recipe and "
        "thread setting as above (the wall time includes writing the report). Tree RSS "
        "is summed over every process every 50 ms, so pages shared between ranks count "
        "once per rank." + _ddp_reading(ddp["devices"])
    )


def _ddp_reading(devices: dict[str, Any]) -> str:
    """One sentence comparing 2 processes with 1, from the numbers."""
    one, two = devices.get("1"), devices.get("2")
    if not one or not two or not one.get("epoch_seconds") or not two.get("epoch_seconds"):
        return ""
    e1 = sum(one["epoch_seconds"]) / len(one["epoch_seconds"])
    e2 = sum(two["epoch_seconds"]) / len(two["epoch_seconds"])
    whole = two["seconds"] / one["seconds"]
    return (
        f"\n\nWith 2 processes an epoch took {e2:.2f} s against {e1:.2f} s "
        f"(×{e1 / e2:.2f} faster), while the whole command took ×{whole:.2f} "
        "the time of one process: each rank starts its own Python, reads the table, fits the "
        "preprocessing and hashes the cached cells, and both ranks share the same 2 cores. "
        "On this machine DDP only shows that the ranks train together correctly; the speed-up "
        "it exists for needs one GPU (or several cores) per rank and epochs that dominate start-up."
    )
