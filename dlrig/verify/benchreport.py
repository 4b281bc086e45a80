"""``dlrig bench``'s reporting half, in dlrig's own interpreter: the card's peaks from the GPU table
beside each measurement, the table a person reads and the PNG chart (matplotlib, optional)."""

from __future__ import annotations

from pathlib import Path

from dlrig.verify.bench import fraction_of_peak

PEAK_FIELD = {"matmul fp32": "fp32_tflops", "matmul tf32": "tf32_tflops", "matmul fp16": "fp16_tflops",
              "matmul bf16": "bf16_tflops", "memory copy (device)": "mem_bandwidth_gbs"}


def card_peaks(report: dict) -> tuple[dict, str | None]:
    """The GPU table's peaks for the measured card ({} when unknown), and the card's table name."""
    if report.get("device") != "cuda":
        return {}, None
    from dlrig.gpu import table as gpus

    for key in (report.get("pci_id"), report.get("name")):
        if not key:
            continue
        try:
            info = gpus.lookup(key)
        except Exception:
            continue
        return {k: v for k, v in info.peaks().items() if v}, info.name
    return {}, None


def add_peaks(report: dict, peaks: dict | None = None) -> dict:
    """Fill ``peak`` and ``fraction`` of every result from the GPU table (in place)."""
    if peaks is None:
        peaks, table_name = card_peaks(report)
        report["peak_source"] = f"dlrig GPU table: {table_name}" if table_name else (
            "none (CPU)" if report.get("device") != "cuda" else "none: card not in dlrig's GPU table")
    else:
        report["peak_source"] = "given"
    for r in report["results"]:
        field = PEAK_FIELD.get(r["name"])
        r["peak"] = peaks.get(field) if field else None
        r["fraction"] = fraction_of_peak(r.get("value"), r["peak"])
    return report


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    if v >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def format_table(report: dict) -> str:
    head = (f"dlrig bench: {report.get('name')} ({report['device']}"
            + (f", CC {report['capability']}" if report.get("capability") else "")
            + f"), torch {report.get('torch')}" + (f", CUDA {report['cuda']}" if report.get("cuda") else "")
            + (f", driver {report['driver']}" if report.get("driver") else ""))
    lines = [head, f"peaks: {report.get('peak_source', '-')}", ""]
    lines.append(f"{'measurement':26} {'measured':>14} {'peak':>12} {'of peak':>8}  notes")
    lines.append("-" * 78)
    for r in report["results"]:
        if r.get("skipped"):
            lines.append(f"{r['name']:26} {'skipped':>14} {'':>12} {'':>8}  {r['skipped']}")
            continue
        unit = r["unit"]
        peak = f"{_fmt(r['peak'])} {unit}" if r.get("peak") else "-"
        frac = f"{r['fraction'] * 100:.0f}%" if r.get("fraction") is not None else "-"
        note = f"{r['speedup']:.2f}x fp32" if r.get("speedup") else ""
        if isinstance(r.get("size"), int) and r["group"] == "matmul":
            note = (note + f" n={r['size']}").strip()
        lines.append(f"{r['name']:26} {_fmt(r['value']) + ' ' + unit:>14} {peak:>12} {frac:>8}  {note}".rstrip())
    lines.append("")
    lines.append(f"method: {report.get('method', '')}; {report.get('seconds', '?')} s in all")
    if report.get("device") == "cpu":
        lines.append("note: CPU sizes are small; these numbers prove the benchmark runs, not the machine's speed")
    return "\n".join(lines) + "\n"


def plot(report: dict, path: str) -> str:
    """A PNG: measured vs peak per group (matmul TFLOPS, bandwidth GB/s, convnet img/s)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [("matmul", "Matmul throughput (TFLOPS)"), ("memory", "Bandwidth (GB/s)"),
              ("train", "Convnet training step (images/s)")]
    rows = [r for r in report["results"] if r.get("value") is not None]
    bw = [r for r in rows if r["group"] in ("memory", "transfer")]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8), gridspec_kw={"width_ratios": [4, 3, 2]})
    for ax, (group, title) in zip(axes, groups):
        data = bw if group == "memory" else [r for r in rows if r["group"] == group]
        labels = [r["name"].replace("matmul ", "").replace("convnet step ", "").replace(" pinned", "\npinned")
                  .replace("memory copy (device)", "device\ncopy") for r in data]
        x = list(range(len(data)))
        measured = [r["value"] for r in data]
        peaks = [r.get("peak") or 0 for r in data]
        width = 0.38 if any(peaks) else 0.6
        shift = width / 2 if any(peaks) else 0.0
        ax.bar([i - shift for i in x], measured, width, label="measured", color="#1f77b4")
        if any(peaks):
            ax.bar([i + shift for i in x], peaks, width, label="peak (GPU table)", color="none",
                   edgecolor="#d62728", hatch="//")
        for i, r in enumerate(data):
            text = _fmt(r["value"])
            if r.get("fraction") is not None:
                text += f"\n{r['fraction'] * 100:.0f}% of peak"
            elif r.get("speedup"):
                text += f"\n{r['speedup']:.2f}x"
            ax.annotate(text, (i - shift, r["value"]), ha="center", va="bottom", fontsize=8)
        ax.margins(y=0.15)
        ax.set_xticks(x)
        ax.set_xticklabels(labels, fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        if not data:
            ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes)
        if any(peaks):
            ax.legend(fontsize=8)
    dev = report.get("name") or report["device"]
    fig.suptitle(f"dlrig bench: {dev} ({report['device']}), torch {report.get('torch')}"
                 + ("" if report.get("device") == "cuda" else "  (CPU: small sizes, no peak)"), fontsize=11)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
