"""Plotly figures for the evaluation page, rendered as HTML fragments.

Plotly's JavaScript is loaded once by the page from our own static files.
"""

import plotly.graph_objects as go


def _html(fig: go.Figure, div_id: str, top: int = 40) -> str:
    fig.update_layout(margin=dict(l=40, r=20, t=top, b=40), template="plotly_white")
    return fig.to_html(include_plotlyjs=False, full_html=False, div_id=div_id,
                       config={"displaylogo": False, "responsive": True})


def score_bars(rows, spec) -> str:
    scored = [r for r in rows if r.scores.get(spec.name) is not None]
    scored.sort(key=lambda r: r.scores[spec.name], reverse=spec.higher_is_better)
    fig = go.Figure(go.Bar(
        x=[r.checkpoint.name for r in scored],
        y=[r.scores[spec.name] for r in scored],
        text=[f"d={r.result.feature_dim}" for r in scored],
        hovertemplate="%{x}<br>" + spec.label + " %{y:.4g}<br>%{text}<extra></extra>",
        marker_color="#3b6ea8",
    ))
    arrow = "higher is better" if spec.higher_is_better else "lower is better"
    fig.update_layout(title=f"{spec.label} per checkpoint ({arrow})", yaxis_title=spec.label,
                      height=380)
    return _html(fig, f"chart-{spec.name}")


def flips_heatmap(report: dict) -> str:
    names = report["names"]
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
        points = [(value, accuracy[r.checkpoint.name], r.checkpoint.name) for r in rows
                  if r.checkpoint.name in accuracy
                  and (value := _predictor_value(spec, r)) is not None]
        if not points:
            continue
        x, y, names = zip(*points)
        fig.add_trace(go.Scatter(
            x=x, y=y, text=names, mode="markers",
            marker=dict(size=11, color="#3b6ea8", line=dict(width=1, color="#fff")),
            visible=not buttons, name=spec.label,
            hovertemplate="%{text}<br>" + spec.label + " %{x:.4g}<br>true accuracy %{y:.1f}%"
                          "<extra></extra>"))
        tau = agreement.get(spec.name, {}).get("weighted_tau")
        title = (f"{spec.label} against true accuracy (weighted τ "
                 + (f"{tau:.2f})" if tau is not None else "undefined)"))
        buttons.append(dict(label=spec.label, method="update",
                            args=[{"visible": None}, {"title.text": title,
                                                      "xaxis.title.text": spec.label}]))
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
