"""A result as text: the plain table (``format_table``), a Markdown report
(``format_markdown``) and a chart (``plot_png``). The goals are shown only when asked for.
"""

from .._atomic import atomic_write
from .goals import goal_lines, listed, verdict
from .sections import EXTRA_IMPLS, IMPLS, SECTIONS, SHORT, any_row


def _section_of(row):
    return row.get("section", "forward")


def _sections_present(result):
    """Section names in run order, the main table ("forward") first."""
    present = list(dict.fromkeys(_section_of(row) for row in result["rows"]))
    return sorted(present, key=lambda s: (s != "forward", present.index(s)))


def _cells(result, section="forward"):
    """[(config, threads, {impl: row})] of one section, in run order."""
    cells = {}
    for row in result["rows"]:
        if _section_of(row) == section:
            cells.setdefault((row["config"], row["threads"]), {})[row["impl"]] = row
    return [(c, n, impls) for (c, n), impls in cells.items()]


def _impls_present(result, section="forward"):
    present = {row["impl"] for row in result["rows"]
               if _section_of(row) == section and row["median_ms"] is not None}
    spec = SECTIONS.get(section)
    order = list(spec.impls if spec is not None else IMPLS + EXTRA_IMPLS)
    return [name for name in order if name in present]


def _ms(row, unit="ms"):
    if row is None or row["median_ms"] is None:
        return "-"
    flag = "!" if row.get("agrees") is False else ""
    value = row["median_ms"] * (1e3 if unit == "us" else 1.0)
    text = f"{value:.0f}" if value >= 1000 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"
    return text + flag


def _ratio(cell, other):
    mine, theirs = cell.get("cylstm"), cell.get(other)
    if (mine is None or theirs is None or mine["median_ms"] is None
            or theirs["median_ms"] is None or theirs["median_ms"] <= 0):
        return "-"
    return f"{mine['median_ms'] / theirs['median_ms']:.2f}"


def _table_data(result, section="forward"):
    """(header, lines, bars): bars are the column indices a '|' goes before."""
    spec = SECTIONS.get(section, SECTIONS["forward"])
    impls = _impls_present(result, section)
    lead = [name for name, _ in spec.lead]
    tail = [name for name, _ in spec.tail]
    ratios = [i for i in spec.ratios if i in impls or section == "forward"]
    header = (["config", "T", "B", "D", "H"] + lead + ["thr"]
              + [SHORT.get(i, i) for i in impls]
              + [f"cy/{SHORT.get(i, i)}" for i in ratios] + tail)
    lines = []
    for config, n, cell in _cells(result, section):
        row = any_row(cell)
        lines.append([config, str(row["T"]), str(row["B"]), str(row["D"]), str(row["H"])]
                     + [column(cell) for _, column in spec.lead] + [str(n)]
                     + [_ms(cell.get(i), spec.unit) for i in impls]
                     + [_ratio(cell, i) for i in ratios]
                     + [column(cell) for _, column in spec.tail])
    first = 6 + len(lead)
    bars = [first, first + len(impls)] + ([first + len(impls) + len(ratios)] if tail else [])
    return header, lines, bars


def _text_table(header, lines, bars):
    widths = [max(len(row[k]) for row in [header] + lines) for k in range(len(header))]

    def fmt(row):
        parts = []
        for k, cell in enumerate(row):
            if k in bars:
                parts.append("|")
            parts.append(cell.ljust(widths[k]) if k == 0 else cell.rjust(widths[k]))
        return " ".join(parts)

    text = [fmt(header)]
    text.append("-" * len(text[0]))
    text.extend(fmt(row) for row in lines)
    return text


def _title(section):
    return SECTIONS[section].title if section in SECTIONS else section


def format_table(result, goals=False):
    """Plain text: the main table (one line per (config, threads), median ms per
    implementation, then cylstm's time over floor, torch, onnxruntime and numpy: below 1 means
    cylstm is faster), a table per section, with `goals` the speed goals, and the notes."""
    settings = result.get("settings", {})
    text = []
    for section in _sections_present(result):
        header, lines, bars = _table_data(result, section)
        if section == "forward":
            text.extend(_text_table(header, lines, bars))
            text.append("")
            text.append(f"median milliseconds per forward pass ({settings.get('mode', '?')} run, "
                        f"{settings.get('dtype', 'float32')}); cy/X = cylstm time / X time, "
                        "below 1 means cylstm is faster")
        else:
            if text:
                text.append("")
            text.append(_title(section))
            text.extend(_text_table(header, lines, bars))
    found = goal_lines(result) if goals else []
    if found:
        text.append("")
        text.extend(found)
    machine = result.get("machine", {})
    if machine:
        versions = machine.get("versions", {})
        text.append("")
        text.append(f"{machine.get('cpu', '?')}, {machine.get('cpus_usable', '?')} CPUs; "
                    + ", ".join(f"{k} {v}" for k, v in versions.items() if v))
    for note in result.get("notes", []):
        text.append(f"note: {note}")
    return "\n".join(text)


def _markdown_table(header, lines):
    out = ["| " + " | ".join(header) + " |",
           "|" + "|".join(":--" if k == 0 else "--:" for k in range(len(header))) + "|"]
    out.extend("| " + " | ".join(row) + " |" for row in lines)
    return out


def _markdown_machine(machine, settings):
    out = []
    if machine:
        versions = machine.get("versions", {})
        out += [
            f"- date: {machine.get('date', '?')}",
            f"- machine: {machine.get('cpu', '?')} ({machine.get('cpus_usable', '?')} usable CPUs"
            f" of {machine.get('cpu_count', '?')}; flags {' '.join(machine.get('cpu_flags', []))})",
            f"- platform: {machine.get('platform', '?')}, Python {machine.get('python', '?')}",
            "- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if v),
        ]
        if machine.get("cylstm_simd_path"):
            out.append(f"- cylstm gate math: {machine['cylstm_simd_path']}")
        blas = machine.get("blas")
        if blas:
            out.append("- BLAS/OpenMP: " + "; ".join(
                f"{lib.get('internal_api', '?')} {lib.get('version') or ''} "
                f"({lib.get('library', '')})".replace("  ", " ") for lib in blas))
        if machine.get("load_average"):
            out.append(f"- load average (1, 5, 15 min) before: "
                       f"{machine.get('load_average_before')}, after: {machine['load_average']}")
    out += [f"- run: {settings.get('mode', '?')}, {settings.get('dtype', 'float32')}, "
            f"{settings.get('repeats', '?')} repeats per cell, "
            f"{settings.get('wall_time_s', '?')} s", ""]
    return out


def format_markdown(result, goals=False):
    """The tables as Markdown, with the machine description above them, with `goals` the
    speed goals below them, and the notes."""
    out = ["# cylstm benchmark", ""]
    out += _markdown_machine(result.get("machine", {}), result.get("settings", {}))
    for section in _sections_present(result):
        header, lines, _ = _table_data(result, section)
        if section == "forward":
            out.append("Median milliseconds per forward pass; `cy/X` is cylstm's time over X's "
                       "(below 1: cylstm is faster). `!` marks an output that disagrees with "
                       "cylstm's.")
        else:
            title = _title(section)
            out.append(f"## {title[0].upper() + title[1:]}")
        out.append("")
        out.extend(_markdown_table(header, lines))
        out.append("")
    found = listed(result) if goals else []
    if found:
        out.append("## Speed goals on this machine (one thread, except the 2-thread speed-up)")
        out.append("")
        out.append("Each ratio is cylstm's median time over the other's, measured side by side "
                   "in this run (below 1: cylstm is faster).")
        out.append("")
        out.extend(_markdown_table(
            ["config", "goal", "ratio", "target", "on this machine"],
            [[g["config"], g["label"], f"{g['text']} {g['ratio']:.2f}",
              f"{g['op']} {g['target']:.2f}".replace("<=", "&le;").replace(">=", "&ge;"),
              verdict(g)] for g in found]))
        out.append("")
    notes = result.get("notes", [])
    if notes:
        out.extend(f"- {note}" for note in notes)
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def _bars(ax, result, cells, impls):
    width = 0.8 / len(impls)
    for k, name in enumerate(impls):
        xs, ys = [], []
        for position, (_, _, cell) in enumerate(cells):
            row = cell.get(name)
            if row is not None and row["median_ms"] is not None:
                xs.append(position + (k - (len(impls) - 1) / 2) * width)
                ys.append(row["median_ms"])
        ax.bar(xs, ys, width, label=SHORT.get(name, name))
    ax.set_xticks(range(len(cells)))
    ax.set_xticklabels([f"{c}\n{n} thr" for c, n, _ in cells])
    ax.set_yscale("log")
    ax.set_ylabel("median ms per forward pass")
    mode = result.get("settings", {}).get("mode", "?")
    ax.set_title(f"cylstm benchmark, one LSTM layer ({mode} run; "
                 f"{result.get('machine', {}).get('cpu', '?')})")
    ax.legend(ncol=len(impls), fontsize="small")
    ax.grid(axis="y", which="both", alpha=0.3)


def _goal_bars(ax, found):
    labels = [f"{g['config']}: {g['text']} {g['op']} {g['target']:.2f}" for g in found]
    ys = range(len(found))
    ax.barh(ys, [g["ratio"] for g in found],
            color=["tab:green" if g["met"] else "tab:red" for g in found])
    ax.scatter([g["target"] for g in found], ys, marker="|", s=300, color="black",
               label="goal", zorder=3)
    ax.set_yticks(list(ys))
    ax.set_yticklabels(labels, fontsize="small")
    ax.invert_yaxis()
    ax.set_xlabel("ratio (green: the goal holds on this machine, red: it does not)")
    ax.legend(fontsize="small")
    ax.grid(axis="x", alpha=0.3)


def plot_png(result, path, goals=False):
    """Draw the main table (median ms per implementation, log scale, one group of bars per
    (config, threads)) and, with `goals`, each goal's ratio against its target into a PNG.

    Returns True, or False when matplotlib is not installed (nothing is written)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return False
    cells = _cells(result, "forward")
    impls = _impls_present(result, "forward")
    found = listed(result) if goals else []
    panels = int(bool(cells and impls)) + int(bool(found))
    figure = Figure(figsize=(11, 4.2 * max(1, panels)), layout="constrained")
    FigureCanvasAgg(figure)
    axes = list(figure.subplots(max(1, panels), 1, squeeze=False)[:, 0])
    if cells and impls:
        _bars(axes.pop(0), result, cells, impls)
    if found:
        _goal_bars(axes.pop(0), found)
    with atomic_write(path, "wb") as f:
        figure.savefig(f, format="png", dpi=100)
    return True
