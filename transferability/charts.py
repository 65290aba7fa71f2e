"""Plotly figures for the pages, rendered as HTML fragments.

Plotly's JavaScript is loaded once by the page from our own static files. The figures are
plain dicts handed to plotly.js as they are (``validate=False``): building them through
plotly's validated objects cost more than the rest of the evaluation page together. They
share a slim version of the ``plotly_white`` template (its layout, without the per-trace
defaults and the 3-D, polar and map sections none of them use), so each figure carries
a few hundred bytes of styling instead of 7 kB.

Metric switching happens in the browser through plotly ``updatemenus``: each metric's
traces are in the figure, one metric's visible at a time.

Every name a figure shows (classes, checkpoints, devices, metrics) goes through
:func:`plain`: plotly reads a subset of HTML in its labels. None goes into a hover
template itself, where plotly would read ``%{...}`` in it.
"""


import numpy as np
import plotly.graph_objects as go
import plotly.io as pio

from config.middleware import nonce_scripts

_KEPT = ("autotypenumbers", "colorway", "font", "hovermode", "hoverlabel", "paper_bgcolor",
         "plot_bgcolor", "xaxis", "yaxis", "shapedefaults", "annotationdefaults", "title")
LIGHT_TEMPLATE = {"layout": {key: value for key, value in
                             pio.templates["plotly_white"].to_plotly_json()["layout"].items()
                             if key in _KEPT}}
# No toolbar button sends a figure (with its class and checkpoint names) to Chart Studio:
# plotly.js shows one unless told not to. Its older switches for the same button
# (showLink, showEditInChartStudio) are gone from the bundled plotly.js, and plotly.py
# warns on every figure that carries them.
CONFIG = {"displaylogo": False, "responsive": True, "showSendToCloud": False}
MUTED = "#5d6675"
BLUE = "#3b6ea8"
ORANGE = "#d9822b"
# ColorBrewer RdBu, with blue for agreement (the app's colour) and red for disagreement.
DIVERGING = [[0.0, "#b2182b"], [0.25, "#ef8a62"], [0.5, "#f7f7f7"], [0.75, "#67a9cf"],
             [1.0, "#2166ac"]]


def plain(text) -> str:
    """``text`` shown by plotly as written.

    Plotly renders a subset of HTML in tick labels, hover text, titles, legend entries and
    annotations: a class named ``<a href="...">x</a>`` would be a live link on the chart.
    It decodes these three entities back, so the escaped text reads as typed.
    """
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _html(fig, div_id: str, top: int = 40, bottom: int = 40) -> str:
    """An HTML fragment drawing ``fig`` (a go.Figure or a {"data", "layout"} dict)."""
    if isinstance(fig, go.Figure):
        fig = fig.to_plotly_json()
    layout = fig.setdefault("layout", {})
    layout["margin"] = dict(l=40, r=20, t=top, b=bottom)
    layout["template"] = LIGHT_TEMPLATE
    # Its <script> carries the request's CSP nonce (the figure's data is JSON-escaped).
    return nonce_scripts(pio.to_html(fig, include_plotlyjs=False, full_html=False,
                                     div_id=div_id, config=CONFIG, validate=False))


def _title(text: str, x: float = 0.05) -> dict:
    return {"text": text, "x": x, "xanchor": "left"}


def flips_heatmap(report: dict) -> str:
    names = [plain(name) for name in report["names"]]
    flips = report["positive_flips"]
    # zmin=0 alone leaves plotly to centre an all-zero matrix on 0 (a mid-blue square and a
    # colour bar running into negative shares): pin the top of the scale too.
    top = max((value for row in flips for value in row), default=0.0)
    fig = go.Figure(go.Heatmap(
        z=flips, x=names, y=names, colorscale="Blues", zmin=0, zmax=max(top, 1.0),
        texttemplate="%{z:.1f}", xgap=2, ygap=2,
        hovertemplate="%{y} right, %{x} wrong: %{z:.2f}% of samples<extra></extra>",
        colorbar=dict(title="%"),
    ))
    fig.update_layout(title="Positive flips: row right where column is wrong (%)",
                      height=max(320, 60 + 40 * len(names)),
                      yaxis=dict(autorange="reversed"))
    return _html(fig, "chart-flips")


def truth_scatter(rows, truth: dict, specs) -> str:
    """Each predictor's score against the true accuracy, one predictor at a time (a menu
    switches), with its weighted tau in the title."""
    accuracy = truth["accuracy"]
    agreement = truth["agreement"]
    fig = go.Figure()
    buttons = []
    for i, spec in enumerate(specs):
        label = plain(spec.label)
        points = [(value, accuracy[r.checkpoint.name], plain(r.checkpoint.name)) for r in rows
                  if r.checkpoint.name in accuracy
                  and (value := _predictor_value(spec, r)) is not None]
        if not points:
            continue
        x, y, names = zip(*points)
        fig.add_trace(go.Scatter(
            x=x, y=y, text=names, mode="markers",
            marker=dict(size=11, color="#3b6ea8", line=dict(width=1, color="#fff")),
            visible=not buttons, name=label,
            hovertemplate="%{text}<br>%{fullData.name} %{x:.4g}<br>true accuracy %{y:.1f}%"
                          "<extra></extra>"))
        tau = agreement.get(spec.name, {}).get("weighted_tau")
        title = (f"{label} against true accuracy (weighted τ "
                 + (f"{tau:.2f})" if tau is not None else "undefined)"))
        buttons.append(dict(label=label, method="update",
                            args=[{"visible": None}, {"title.text": title,
                                                      "xaxis.title.text": label}]))
    if not buttons:
        return ""
    for i, button in enumerate(buttons):
        button["args"][0]["visible"] = [j == i for j in range(len(buttons))]
    first = buttons[0]["args"][1]
    fig.update_layout(
        title=dict(text=first["title.text"], x=0.22, xanchor="left"),
        xaxis_title=first["xaxis.title.text"], yaxis_title="True accuracy (%)", height=440,
        updatemenus=[dict(buttons=buttons, direction="down", x=0.0, xanchor="left", y=1.16,
                          yanchor="bottom", showactive=True)])
    return _html(fig, "chart-truth", top=80)


def _predictor_value(spec, row):
    from .verification import Reference

    value = spec.value(row) if isinstance(spec, Reference) else row.scores.get(spec.name)
    return float(value) if value is not None else None



# Charts over every metric, one at a time ------------------------------------------------------

def _menu(buttons: list[dict], traces_per_button: int, x: float = 0.0, y: float = 1.16) -> dict:
    """A dropdown that shows the traces of one button at a time (``traces_per_button``
    consecutive traces each) and applies the button's layout changes."""
    total = len(buttons) * traces_per_button
    for i, button in enumerate(buttons):
        button["args"] = [{"visible": [j // traces_per_button == i for j in range(total)]},
                          button.pop("layout")]
        button["method"] = "update"
    return dict(buttons=buttons, direction="down", x=x, xanchor="left", y=y, yanchor="bottom",
                showactive=True, active=0)


def _arrow(spec) -> str:
    return "higher is better" if spec.higher_is_better else "lower is better"


def _float(value):
    """A JSON number to 6 significant digits (the hovers show 4; the page stays small),
    or None for a missing or non-finite one."""
    if value is None:
        return None
    value = float(value)
    return float(f"{value:.6g}") if np.isfinite(value) else None


def score_bars(rows, specs, first=None) -> str:
    """Each metric's score per checkpoint, best first; a menu switches the metric.

    ``specs``: the metrics to offer (``first`` is shown first). The figure's id is
    ``chart-<first metric>``.
    """
    if not isinstance(specs, (list, tuple)):
        specs = [specs]
    first = first or specs[0]
    specs = [first] + [s for s in specs if s.name != first.name]
    traces, buttons = [], []
    for spec in specs:
        scored = [r for r in rows if _float(r.scores.get(spec.name)) is not None]
        if not scored and spec is not first:
            continue
        scored.sort(key=lambda r: r.scores[spec.name], reverse=spec.higher_is_better)
        names = [plain(r.checkpoint.name) for r in scored]
        label = plain(spec.label)
        traces.append({
            "type": "bar", "x": names, "y": [_float(r.scores[spec.name]) for r in scored],
            "text": [f"d={r.result.feature_dim}" for r in scored], "textposition": "none",
            "hovertemplate": "%{x}<br>%{fullData.name} %{y:.4g}<br>%{text}<extra></extra>",
            "marker": {"color": BLUE}, "name": label, "visible": not buttons,
        })
        buttons.append(dict(label=label, layout={
            "title.text": f"{label} per checkpoint ({_arrow(spec)})",
            "yaxis.title.text": label, "xaxis.categoryarray": names}))
    shown = buttons[0]["layout"]
    menu = len(buttons) > 1
    layout = {"title": _title(shown["title.text"], 0.22 if menu else 0.05), "height": 400,
              "yaxis": {"title": {"text": shown["yaxis.title.text"]}},
              "xaxis": {"categoryorder": "array", "categoryarray": shown["xaxis.categoryarray"]}}
    if menu:
        layout["updatemenus"] = [_menu(buttons, 1)]
    return _html({"data": traces, "layout": layout}, f"chart-{first.name}", top=80 if menu else 40)


def throughput(result) -> float | None:
    """Images per second of the result's feature extraction; None when its features came
    from the cache (nothing was measured) or the timing is missing."""
    if result.features_cached or not result.extraction_seconds or not result.images_total:
        return None
    return result.images_total / result.extraction_seconds


def pareto_front(points, lower_x_is_better: bool) -> list[int]:
    """Indices of the points (x, score; a higher score is better) that no other point
    beats on both x and score, from the best x to the worst."""
    order = sorted(range(len(points)),
                   key=lambda i: ((points[i][0] if lower_x_is_better else -points[i][0]),
                                  -points[i][1]))
    front, best = [], None
    for i in order:
        if best is None or points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def _log_ticks(values) -> dict:
    """Tick marks at 1, 2 and 5 times powers of ten over the values' range, in SI units
    (30k, 100k, 2M): plotly's own log ticks label every digit and only the decades."""
    values = [v for v in values if v and v > 0]
    if not values:
        return {}
    low, high = min(values), max(values)
    ticks = [m * 10.0 ** k for k in range(int(np.floor(np.log10(low))) - 1,
                                          int(np.ceil(np.log10(high))) + 1)
             for m in (1, 2, 5) if low / 1.6 <= m * 10.0 ** k <= high * 1.6]
    return {"tickvals": ticks, "tickformat": "~s"} if len(ticks) >= 2 else {}


COSTS = (
    # (cost of a row, fewer is better, axis title, unit in the hover)
    (lambda r: r.checkpoint.param_count, True, "parameters", "parameters"),
    (lambda r: throughput(r.result), False, "images/s during feature extraction", "images/s"),
)


def cost_scatter(rows, specs) -> str:
    """Each metric's score against model size and against extraction speed, with the
    Pareto front (the checkpoints nothing beats on both) drawn; a menu switches the metric.
    Two panels in one figure, 4 traces per metric."""
    from .models import Status

    done = [r for r in rows if r.result.status == Status.DONE]
    several_devices = len({r.result.device for r in done if throughput(r.result)}) > 1
    traces, buttons = [], []
    for spec in specs:
        scored = [r for r in done if _float(r.scores.get(spec.name)) is not None]
        if not scored:
            continue
        sign = 1.0 if spec.higher_is_better else -1.0
        label = plain(spec.label)
        visible = not buttons
        for panel, (cost, fewer_is_better, _, unit) in enumerate(COSTS, start=1):
            points = [(_float(cost(r)), _float(r.scores[spec.name]), r) for r in scored
                      if cost(r)]
            xs, ys = [p[0] for p in points], [p[1] for p in points]
            axes = {"xaxis": f"x{panel if panel > 1 else ''}",
                    "yaxis": f"y{panel if panel > 1 else ''}"}
            hover = ("%{text}<br>%{fullData.name} %{y:.4g}<br>%{x:,.4~s} " + unit
                     + ("<br>on %{customdata}" if panel == 2 and several_devices else "")
                     + "<extra></extra>")
            traces.append({
                "type": "scatter", "mode": "markers", "x": xs, "y": ys, **axes,
                "text": [plain(r.checkpoint.name) for _, _, r in points],
                **({"customdata": [plain(r.result.device or "an unknown device")
                                   for _, _, r in points]}
                   if panel == 2 and several_devices else {}),
                "visible": visible, "name": label, "showlegend": False,
                "marker": {"size": 10, "color": BLUE, "line": {"width": 1, "color": "#fff"}},
                "hovertemplate": hover})
            front = pareto_front([(x, sign * y) for x, y in zip(xs, ys)], fewer_is_better)
            front.sort(key=lambda i: xs[i])
            traces.append({
                "type": "scatter", "mode": "lines+markers", **axes,
                "x": [xs[i] for i in front], "y": [ys[i] for i in front],
                "line": {"color": ORANGE, "width": 2, "shape": "hv" if fewer_is_better else "vh"},
                "marker": {"size": 14, "color": "rgba(0,0,0,0)",
                           "line": {"width": 2, "color": ORANGE}},
                "text": [plain(points[i][2].checkpoint.name) for i in front], "visible": visible,
                "name": "Pareto front", "showlegend": panel == 1,
                "hovertemplate": "%{text}: on the Pareto front<extra></extra>"})
        buttons.append(dict(label=label, layout={
            "title.text": f"{label} against cost ({_arrow(spec)})",
            "yaxis.title.text": label}))
    if not buttons:
        return ""
    annotations = [
        {"text": "against parameters (fewer is cheaper)", "xref": "x domain", "yref": "paper",
         "x": 0.5, "y": 1.0, "yanchor": "bottom", "showarrow": False},
        {"text": "against extraction throughput (faster is cheaper)", "xref": "x2 domain",
         "yref": "paper", "x": 0.5, "y": 1.0, "yanchor": "bottom", "showarrow": False}]
    if not any(throughput(r.result) for r in done):
        annotations.append({"text": "no measured extraction: the features came from the cache",
                            "xref": "x2 domain", "yref": "y2 domain", "x": 0.5, "y": 0.5,
                            "showarrow": False, "font": {"color": MUTED}})
    if not any(r.checkpoint.param_count for r in done):
        annotations.append({"text": "no parameter counts recorded", "xref": "x domain",
                            "yref": "y domain", "x": 0.5, "y": 0.5, "showarrow": False,
                            "font": {"color": MUTED}})
    shown = buttons[0]["layout"]
    layout = {
        "title": _title(shown["title.text"], 0.22), "height": 440, "annotations": annotations,
        "xaxis": {"type": "log", "domain": [0, 0.47], "title": {"text": COSTS[0][2]},
                  **_log_ticks(COSTS[0][0](r) for r in done)},
        "xaxis2": {"type": "log", "domain": [0.53, 1], "title": {"text": COSTS[1][2]},
                   **_log_ticks(COSTS[1][0](r) for r in done)},
        "yaxis": {"title": {"text": shown["yaxis.title.text"]}},
        "yaxis2": {"matches": "y", "anchor": "x2", "showticklabels": False},
        "legend": {"orientation": "h", "x": 1, "xanchor": "right", "y": 1.16,
                   "yanchor": "bottom"},
    }
    if len(buttons) > 1:
        layout["updatemenus"] = [_menu(buttons, 2 * len(COSTS))]
    return _html({"data": traces, "layout": layout}, "chart-cost", top=100)


MIN_AGREEMENT_CHECKPOINTS = 3


def metric_agreement(rows, specs) -> tuple[list[str], list[list[float | None]], list[list[int]]]:
    """Kendall's tau between every two metrics' orders of the finished checkpoints, each
    metric turned so that "better" points the same way; None where undefined (a constant
    metric, or fewer than 3 checkpoints scored by both). Returns (labels, tau, counts)."""
    from .models import Status
    from .ranking import ConstantInputError, kendall_tau

    done = [r for r in rows if r.result.status == Status.DONE]
    labels = [s.label for s in specs]
    n = len(specs)
    taus = [[None] * n for _ in range(n)]
    counts = [[0] * n for _ in range(n)]
    for i, a in enumerate(specs):
        for j in range(i, n):  # tau is symmetric: each pair once
            b = specs[j]
            pairs = [(_float(r.scores.get(a.name)), _float(r.scores.get(b.name))) for r in done]
            pairs = [(p, q) for p, q in pairs if p is not None and q is not None]
            value = None
            if len(pairs) >= MIN_AGREEMENT_CHECKPOINTS:
                x = [(p if a.higher_is_better else -p) for p, _ in pairs]
                y = [(q if b.higher_is_better else -q) for _, q in pairs]
                try:
                    value = _float(kendall_tau(x, y))
                except (ConstantInputError, ValueError):
                    value = None
            taus[i][j] = taus[j][i] = value
            counts[i][j] = counts[j][i] = len(pairs)
    return labels, taus, counts


def agreement_heatmap(rows, specs) -> str:
    """The metric-agreement matrix as a heatmap; blank cells where tau is undefined."""
    if len(specs) < 2:
        return ""
    labels, taus, counts = metric_agreement(rows, specs)
    labels = [plain(label) for label in labels]
    if all(v is None for i, row in enumerate(taus) for j, v in enumerate(row) if i != j):
        return ""
    text = [["" if v is None else f"{v:.2f}" for v in row] for row in taus]
    hover = [[(f"{labels[i]} and {labels[j]}: τ {v:.2f} over {counts[i][j]} checkpoints"
               if v is not None else
               f"{labels[i]} and {labels[j]}: undefined (a constant metric, or fewer than "
               f"{MIN_AGREEMENT_CHECKPOINTS} checkpoints scored by both)")
              for j, v in enumerate(row)] for i, row in enumerate(taus)]
    trace = {"type": "heatmap", "z": taus, "x": labels, "y": labels, "text": text,
             "texttemplate": "%{text}", "customdata": hover, "colorscale": DIVERGING,
             "zmin": -1, "zmax": 1, "xgap": 2, "ygap": 2, "hoverongaps": False,
             "hovertemplate": "%{customdata}<extra></extra>", "colorbar": {"title": {"text": "τ"}}}
    layout = {"title": _title("Do the metrics agree? Kendall's τ between their rankings"),
              "height": max(380, 200 + 30 * len(labels)),
              "yaxis": {"autorange": "reversed", "automargin": True},
              "xaxis": {"tickangle": -35, "automargin": True}}
    return _html({"data": [trace], "layout": layout}, "chart-agreement", bottom=110)


PROBE = "probe_accuracy"


def probe_scatter(rows, specs) -> str:
    """Each metric against the linear-probe accuracy (a cheap stand-in for the truth), one
    metric at a time, with its Kendall tau against the probe in the title."""
    from .models import Status
    from .ranking import ConstantInputError, kendall_tau

    done = [r for r in rows
            if r.result.status == Status.DONE and _float(r.scores.get(PROBE)) is not None]
    traces, buttons = [], []
    for spec in specs:
        if spec.name == PROBE:
            continue
        points = [(_float(r.scores.get(spec.name)), _float(100.0 * r.scores[PROBE]),
                   plain(r.checkpoint.name)) for r in done]
        points = [p for p in points if p[0] is not None]
        if len(points) < 2:
            continue
        x, y, names = (list(column) for column in zip(*points))
        try:
            tau = kendall_tau(x, y, spec.higher_is_better)
        except (ConstantInputError, ValueError):
            tau = None
        label = plain(spec.label)
        traces.append({
            "type": "scatter", "x": x, "y": y, "text": names, "mode": "markers",
            "visible": not buttons, "name": label,
            "marker": {"size": 11, "color": BLUE, "line": {"width": 1, "color": "#fff"}},
            "hovertemplate": "%{text}<br>%{fullData.name} %{x:.4g}<br>linear probe %{y:.1f}%"
                             "<extra></extra>"})
        buttons.append(dict(label=label, layout={
            "title.text": f"{label} against linear-probe accuracy (Kendall τ "
                          + (f"{tau:.2f})" if tau is not None else "undefined)"),
            "xaxis.title.text": label}))
    if not buttons:
        return ""
    shown = buttons[0]["layout"]
    layout = {"title": _title(shown["title.text"], 0.22), "height": 420,
              "xaxis": {"title": {"text": shown["xaxis.title.text"]}},
              "yaxis": {"title": {"text": "Linear probe accuracy (%)"}}}
    if len(buttons) > 1:
        layout["updatemenus"] = [_menu(buttons, 1)]
    return _html({"data": traces, "layout": layout}, "chart-probe", top=80)


# The pair page and the dataset page -----------------------------------------------------------

def pair_breakdown(classes, counts_ab, counts_ba, name_a: str, name_b: str) -> str:
    """Per class: the images A gets right and B wrong, and the other way round, as counts
    or as shares of each direction's flips (a menu switches)."""
    classes = [plain(c) for c in classes]
    counts_ab, counts_ba = [int(c) for c in counts_ab], [int(c) for c in counts_ba]
    total_ab, total_ba = sum(counts_ab), sum(counts_ba)
    share_ab = [100.0 * c / total_ab if total_ab else 0.0 for c in counts_ab]
    share_ba = [100.0 * c / total_ba if total_ba else 0.0 for c in counts_ba]
    name_a, name_b = plain(name_a), plain(name_b)
    label_ab, label_ba = f"{name_a} right, {name_b} wrong", f"{name_b} right, {name_a} wrong"
    traces = []
    for as_count in (True, False):
        for label, counts, shares, colour in ((label_ab, counts_ab, share_ab, BLUE),
                                              (label_ba, counts_ba, share_ba, ORANGE)):
            traces.append({
                "type": "bar", "x": classes, "y": counts if as_count else shares,
                "customdata": shares if as_count else counts, "name": label,
                "marker": {"color": colour}, "visible": as_count,
                "hovertemplate": "class %{x}<br>"
                + ("%{y:d} images (%{customdata:.1f}% of the flips)" if as_count
                   else "%{y:.1f}% of the flips (%{customdata:d} images)")
                + "<extra>%{fullData.name}</extra>"})
    buttons = [dict(label="Count", layout={"yaxis.title.text": "images"}),
               dict(label="Share", layout={"yaxis.title.text": "% of the direction's flips"})]
    layout = {"barmode": "group", "height": 420,
              "title": _title("Where the flips fall, per class", 0.16),
              "xaxis": {"type": "category", "title": {"text": "class"}},
              "yaxis": {"title": {"text": "images"}},
              "legend": {"orientation": "h", "x": 0, "y": -0.22, "yanchor": "top"},
              "updatemenus": [_menu(buttons, 2)]}
    return _html({"data": traces, "layout": layout}, "chart-pair-classes", top=80)


def class_balance(class_names, class_counts, tiny: int = 5) -> str:
    """Images per class in name order; classes under ``tiny`` images in red."""
    names = [plain(c) for c in class_names]
    counts = [int(c) for c in class_counts]
    mean = sum(counts) / len(counts) if counts else 0
    trace = {"type": "bar", "x": names, "y": counts,
             "marker": {"color": ["#b02a37" if c < tiny else BLUE for c in counts]},
             "hovertemplate": "class %{x}: %{y} images<extra></extra>"}
    layout = {"title": _title("Images per class"), "height": 320,
              "yaxis": {"title": {"text": "images"}}, "xaxis": {"type": "category"},
              "shapes": [{"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": mean,
                          "y1": mean, "line": {"color": MUTED, "dash": "dot"}}],
              "annotations": [{"text": f"mean {mean:.0f}", "xref": "paper", "x": 1, "y": mean,
                               "xanchor": "right", "yanchor": "bottom", "showarrow": False,
                               "font": {"color": MUTED}}]}
    return _html({"data": [trace], "layout": layout}, "chart-classes")


# A transfer's steps -----------------------------------------------------------------------

def _step_labels(labels: list[str]) -> list[str]:
    """Axis labels for a transfer's steps: "step 1", "step 2", ... as numbered in the table
    above the chart (checkpoint names are too long to stand side by side); a lone step
    keeps its label. The hover shows the names."""
    if len(labels) == 1:
        return [plain(labels[0])]
    return [f"step {i + 1}" for i in range(len(labels))]


def transfer_accuracy(steps: list[tuple[str, float]], before: float | None,
                      teacher_accuracy: dict) -> str:
    """The student's held-out accuracy after each step, from where it started, with each
    teacher's own accuracy as a dotted line."""
    names = (["initial student"] if before is not None else []) + [
        plain(label) for label, _ in steps]
    labels = ((["initial student"] if before is not None else [])
              + _step_labels([label for label, _ in steps]))
    values = ([before] if before is not None else []) + [value for _, value in steps]
    data = [{"type": "scatter", "mode": "lines+markers", "x": labels, "y": values,
             "customdata": names, "name": "student", "line": {"color": BLUE},
             "hovertemplate": "%{customdata}: %{y:.1f} %<extra></extra>"}]
    for name, value in sorted(teacher_accuracy.items()):
        data.append({"type": "scatter", "mode": "lines", "x": [labels[0], labels[-1]],
                     "y": [value, value], "name": f"teacher {plain(name)}",
                     "line": {"dash": "dot", "width": 1},
                     "hovertemplate": f"%{{fullData.name}}: {value:.1f} %<extra></extra>"})
    return _html({"data": data, "layout": {
        "title": _title("Student accuracy after each step (held-out, %)"),
        "yaxis": {"title": {"text": "accuracy, %"}}, "height": 320,
        "legend": {"orientation": "h", "y": -0.25}}}, "transfer-accuracy", bottom=80)


def transfer_flips(steps: list[tuple[str, dict]]) -> str:
    """Gains and losses of each step against the initial student: positive flips (right
    now, wrong before) up, negative flips down, in % of the held-out images."""
    labels = _step_labels([label for label, _ in steps])
    names = [plain(label) for label, _ in steps]
    data = [
        {"type": "bar", "x": labels, "y": [d["positive_flips"] for _, d in steps],
         "customdata": names, "name": "gained (positive flips)", "marker": {"color": BLUE},
         "hovertemplate": "%{customdata}: +%{y:.1f} %<extra></extra>"},
        {"type": "bar", "x": labels, "y": [-d["negative_flips"] for _, d in steps],
         "customdata": names, "name": "lost (negative flips)", "marker": {"color": ORANGE},
         "hovertemplate": "%{customdata}: %{y:.1f} %<extra></extra>"},
    ]
    return _html({"data": data, "layout": {
        "title": _title("Gained and lost against the initial student (% of held-out images)"),
        "barmode": "relative", "height": 320, "yaxis": {"title": {"text": "% of images"}},
        "legend": {"orientation": "h", "y": -0.25}}}, "transfer-flips", bottom=80)


def transfer_guidance(guided: dict, class_names: list[str]) -> str:
    """The parallel form: per class, how many training images each candidate (the initial
    student or a teacher) guided."""
    classes = [plain(c) for c in class_names]
    data = [{"type": "bar", "x": classes, "y": counts, "name": plain(name),
             "hovertemplate": f"%{{x}}: %{{y}} images guided by %{{fullData.name}}"
                              f"<extra></extra>"}
            for name, counts in zip(guided["candidates"], guided["per_class"])]
    return _html({"data": data, "layout": {
        "title": _title("Who guided each class (training images, all epochs)"),
        "barmode": "stack", "height": 340, "yaxis": {"title": {"text": "images"}},
        "legend": {"orientation": "h", "y": -0.3}}}, "transfer-guidance", bottom=90)
