"""The sweep's charts and pages: per dataset a Pareto chart PNG (score vs visual tokens, score vs latency) and
``sweep.md`` / ``sweep.html`` (the table per dataset, the charts, how to read them).

Each model is one colour; every grid point is a dot with its 95% CI as an error bar (when there is one), labelled
with its tiles and SCM ratio; the model's Pareto front (no other point of the model is both cheaper and better) is a
step line; the card's setting (VLMEvalKit tiles, the card's SCM) is a star and the card's published score a dashed
line in the model's colour.
"""
from __future__ import annotations

import html
import math
from pathlib import Path

AXES = (("visual_tokens", "visual tokens per sample (after SCM)"), ("latency_s", "latency per sample (s)"))
SHOWN = ("model", "tiles", "scm", "rows", "failed", "headline", "ci_lo", "ci_hi", "visual_tokens", "prompt_tokens",
         "generated_tokens", "samples_per_s", "latency_s", "peak_mem_gb", "card_setting", "published")


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats on both cost (lower) and score (higher), by increasing cost."""
    front, best = [], -math.inf
    for cost, score in sorted(points, key=lambda p: (p[0], -p[1])):
        if score > best:
            front.append((cost, score))
            best = score
    return front


def write_charts(df, out: Path) -> dict[str, Path]:
    """``{dataset: png}`` for every dataset of the table."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from minimonkey_eval.eval.sweep.state import label, safe_name

    charts = {}
    colours = {m: f"C{i}" for i, m in enumerate(dict.fromkeys(df["model"]))}
    for dataset, rows in df.groupby("dataset", sort=False):
        fig = Figure(figsize=(12, 5), layout="constrained")
        FigureCanvasAgg(fig)
        for ax, (x_col, x_label) in zip(fig.subplots(1, 2), AXES):
            for model, mrows in rows.groupby("model", sort=False):
                colour = colours[model]
                ok = mrows[mrows["headline"].notna() & mrows[x_col].notna()]
                for _, r in ok.iterrows():
                    err = None
                    if not (math.isnan(r["ci_lo"]) or math.isnan(r["ci_hi"])):
                        err = [[max(0.0, r["headline"] - r["ci_lo"])], [max(0.0, r["ci_hi"] - r["headline"])]]
                    card = bool(r["card_setting"])
                    ax.errorbar(r[x_col], r["headline"], yerr=err, fmt="*" if card else "o", color=colour,
                                markersize=15 if card else 6, capsize=3, zorder=3,
                                markeredgecolor="black" if card else colour)
                    ax.annotate(label(r) + (" (card setting)" if card else ""), (r[x_col], r["headline"]),
                                textcoords="offset points", xytext=(5, 4), fontsize=7)
                front = pareto_front(list(zip(ok[x_col].astype(float), ok["headline"].astype(float))))
                if front:
                    xs, ys = zip(*front)
                    ax.step(xs, ys, where="post", color=colour, alpha=0.6, label=f"{model} (Pareto front)")
                published = mrows["published"].dropna()
                if len(published):
                    ax.axhline(float(published.iloc[0]), color=colour, linestyle="--", linewidth=1,
                               label=f"{model} published {float(published.iloc[0]):g}")
            ax.set_xlabel(x_label)
            ax.set_ylabel(f"{dataset} headline")
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
        fig.suptitle(f"{dataset}: score against cost (star: card setting; bars: 95% CI)")
        path = out / f"{safe_name(dataset)}_pareto.png"
        fig.savefig(path, dpi=100)
        charts[dataset] = path
    return charts


def _fmt(value) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    return "" if value is None else str(value)


def write_pages(df, out: Path, charts: dict[str, Path]) -> Path:
    """sweep.md and sweep.html; returns the markdown path."""
    notes = ["Each row is a run folder (its name in `run_name`) scored on the first `limit` rows of the dataset.",
             "Tokens and latency are means over answered samples; latency is the wall time of the sample's batch.",
             "Peak memory: " + "; ".join(sorted(set(df["peak_mem_kind"].dropna().astype(str)))) + ".",
             "CI: " + "; ".join(sorted(set(df["ci_note"].dropna().astype(str)))) + "."]
    md = ["# Sweep: score against cost", "", *[f"- {n}" for n in notes], ""]
    page = ["<!doctype html><html><head><meta charset='utf-8'><title>sweep</title></head><body>",
            "<h1>Sweep: score against cost</h1><ul>", *[f"<li>{html.escape(n)}</li>" for n in notes], "</ul>"]
    for dataset, rows in df.groupby("dataset", sort=False):
        md += [f"## {dataset}", "", "| " + " | ".join(SHOWN) + " |", "|" + "---|" * len(SHOWN)]
        md += ["| " + " | ".join(_fmt(r[c]) for c in SHOWN) + " |" for _, r in rows.iterrows()]
        page += [f"<h2>{html.escape(dataset)}</h2>", "<table border='1' cellspacing='0' cellpadding='3'><tr>",
                 *[f"<th>{html.escape(c)}</th>" for c in SHOWN], "</tr>"]
        page += ["<tr>" + "".join(f"<td>{html.escape(_fmt(r[c]))}</td>" for c in SHOWN) + "</tr>"
                 for _, r in rows.iterrows()]
        page.append("</table>")
        if dataset in charts:
            name = charts[dataset].name
            md += ["", f"![{dataset} Pareto chart]({name})"]
            page.append(f"<p><img src='{html.escape(name)}' alt='{html.escape(dataset)} Pareto chart' "
                        "width='100%'></p>")
        md.append("")
    page.append("</body></html>")
    path = out / "sweep.md"
    path.write_text("\n".join(md) + "\n", encoding="utf-8")
    (out / "sweep.html").write_text("\n".join(page) + "\n", encoding="utf-8")
    return path
