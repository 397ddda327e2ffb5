"""The card's figures, as PNG bytes that are identical on every run.

Figures are built on a bare ``Figure`` with the Agg canvas (no pyplot global state, no display),
under matplotlib's default style (a user's matplotlibrc cannot change the bytes), at a fixed size
and DPI, and saved without the "Software" text chunk; Agg writes no timestamp.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Mapping, Sequence

import numpy as np

from .decode import DecodedSequence
from .inputs import MODALITY_NAMES, TaskAudit, TaskEpisodes

__all__ = ["DPI", "MODALITY_COLORS", "returns_png", "token_mix_png", "example_png", "fmt_num"]

DPI = 100
MODALITY_COLORS: dict[str, str] = {
    "pad": "#d9d9d9", "text": "#1b9e77", "image": "#7570b3", "discrete": "#e6ab02",
    "continuous": "#66a61e", "separator": "#000000", "action": "#d95f02",
    "return_to_go": "#e7298a", "reward": "#a6761d",  # the MGDT scheme's codes 7 and 8
}
KEPT_COLOR, FILTERED_COLOR, WINDOW_COLOR, THRESHOLD_COLOR = "#1f77b4", "#9e9e9e", "#ffd54f", \
    "#c62828"
MAX_FRAMES = 8  # timesteps drawn in the example figure
MAX_PAIRS = 5  # image-caption pairs drawn


def fmt_num(x: float) -> str:
    """Short human form of a float for figure labels (the card text gives exact values)."""
    return f"{x:.4g}"


def _figure(width: float, height: float, layout: str | None = "constrained"):
    """``layout=None``: the caller places the axes itself (:func:`_place`)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _tick_text_in(text: str) -> float:
    """Width of ``text`` as a y tick label, in inches (the size the style in force gives)."""
    import matplotlib as mpl
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextToPath

    size = FontProperties(size=mpl.rcParams["ytick.labelsize"])
    width, _, _ = TextToPath().get_text_width_height_descent(text, size, ismath=False)
    return 1.1 * width / 72.0  # + 10%: Agg's hinted glyphs at 100 dpi come out a little wider


def _ylabels_in(ax) -> float:
    """Room left of ``ax`` for its y label and tick labels, in inches."""
    lo, hi = sorted(ax.get_ylim())
    locs = [v for v in ax.yaxis.get_majorticklocs() if lo <= v <= hi]
    labels = ax.yaxis.get_major_formatter().format_ticks(locs) if locs else [""]
    return 0.32 + max(_tick_text_in(t) for t in labels)


def _place(fig, axes: Sequence, left: float, right: float, top: float, bottom: float,
           gaps: Sequence[float] = (), ratios: Sequence[float] | None = None) -> None:
    """Put one row of ``axes`` at fixed margins and gaps (inches).

    Why not matplotlib's constrained layout: it measures every text of the figure twice before
    drawing, which cost more than the drawing (0.6 against 0.25 CPU s for the returns figure);
    the margins here are sized from the labels' own widths, so nothing is clipped.
    """
    width, height = fig.get_size_inches()
    ratios = list(ratios or [1.0] * len(axes))
    free = width - left - right - sum(gaps)
    x = left
    for k, ax in enumerate(axes):
        w = free * ratios[k] / sum(ratios)
        ax.set_position([x / width, bottom / height, w / width, (height - top - bottom) / height])
        x += w + (gaps[k] if k < len(gaps) else 0.0)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def _styled(draw):
    """Run ``draw`` under matplotlib's default style, whatever the user's rc says."""
    import matplotlib as mpl
    import matplotlib.style

    def wrapper(*args, **kwargs) -> bytes:
        with matplotlib.style.context("default"), mpl.rc_context({"svg.hashsalt": "trajcorpus",
                                                            "font.size": 9}):
            return _png(draw(*args, **kwargs))

    wrapper.__doc__ = draw.__doc__
    wrapper.__name__ = draw.__name__
    wrapper.draw = draw  # the figure itself, for tests that look at what is drawn
    return wrapper


@_styled
def returns_png(config: str, audit: TaskAudit, eps: TaskEpisodes):
    """Returns over collection order (best window shaded, threshold drawn) + kept/filtered hist."""
    fig = _figure(11.0, 4.0, layout=None)
    ax, hx = fig.subplots(1, 2)
    n = len(eps.returns)
    x = np.arange(n)
    ms = 4 if n <= 200 else 2 if n <= 5000 else 1
    if audit.filter_on and audit.window is not None and audit.best_window_start is not None:
        j, w = audit.best_window_start, audit.window
        ax.axvspan(j - 0.5, j + w - 0.5, color=WINDOW_COLOR, alpha=0.45, lw=0,
                   label=f"best window: episodes {j}..{j + w - 1} (W={w})")
        if audit.expert_return is not None:
            ax.hlines(audit.expert_return, j - 0.5, j + w - 0.5, colors="#6d4c00", lw=2.5,
                      label=f"expert return (window mean) = {fmt_num(audit.expert_return)}")
    ax.plot(x[eps.kept], eps.returns[eps.kept], "o", ms=ms, color=KEPT_COLOR,
            label=f"kept ({int(eps.kept.sum())})")
    ax.plot(x[~eps.kept], eps.returns[~eps.kept], "x", ms=ms + 1, color=FILTERED_COLOR,
            label=f"filtered ({int((~eps.kept).sum())})")
    if audit.threshold is not None:
        ax.axhline(audit.threshold, color=THRESHOLD_COLOR, ls="--", lw=1.2,
                   label=f"threshold = {fmt_num(audit.threshold)}")
    ax.set_xlim(-0.5 - 0.01 * n, n - 0.5 + 0.01 * n)
    ax.set_xlabel("episode index in collection order (0 = collected first)")
    ax.set_ylabel("episode return (stored rewards)")
    ax.set_title(f"{config} / {audit.task}: episode returns (N = {n})", loc="left")
    ax.grid(True, lw=0.3, alpha=0.6)

    edges = np.histogram_bin_edges(eps.returns, bins=int(np.clip(np.sqrt(max(n, 1)) * 2, 5, 40)))
    if edges[0] == edges[-1]:
        edges = np.array([edges[0] - 0.5, edges[0] + 0.5])
    if audit.threshold is not None and edges[0] < audit.threshold < edges[-1]:
        # an edge at the threshold: no bar mixes kept and filtered returns
        edges = np.unique(np.append(edges, audit.threshold))
    # white edges: adjacent bars (e.g. three filtered episodes in neighbouring bins) stay apart
    hx.hist([eps.returns[eps.kept], eps.returns[~eps.kept]], bins=edges, stacked=True,
            color=[KEPT_COLOR, FILTERED_COLOR], label=["kept", "filtered"],
            orientation="vertical", edgecolor="white", linewidth=0.8)
    if audit.threshold is not None:
        hx.axvline(audit.threshold, color=THRESHOLD_COLOR, ls="--", lw=1.2, label="threshold")
    hx.set_xlabel("episode return")
    hx.set_ylabel("episodes")
    hx.set_title("returns: kept vs filtered", loc="left")
    hx.grid(True, axis="y", lw=0.3, alpha=0.6)
    _integer_axis(ax.xaxis)  # episode indices
    _integer_axis(hx.yaxis)  # episode counts
    # below the axes: tick labels, the axis label, then up to two legend rows
    left = _ylabels_in(ax)  # (this also sets the tick formatter's offset)
    # an offset text ("1e6") above the y axis lifts the title (matplotlib moves it) by a line
    top = 0.5 if ax.yaxis.get_major_formatter().get_offset() else 0.3
    _place(fig, (ax, hx), left=left, right=0.15, top=top, bottom=0.95,
           gaps=(_ylabels_in(hx) + 0.25,), ratios=(2.2, 1.0))
    for a in (ax, hx):  # "best" placement is slow on many points and can still cover data
        box = a.get_position()
        a.legend(loc="lower center", bbox_to_anchor=(box.x0 + box.width / 2, 0.01),
                 bbox_transform=fig.transFigure, ncols=3, fontsize=7, frameon=False)
    return fig


@_styled
def token_mix_png(config: str, audits: Mapping[str, TaskAudit]):
    """Share of each modality in every task's stored tokens (padding included); tasks without
    tokens (e.g. unattributed rejects) have no bar."""
    tasks = [t for t in audits if sum(audits[t].tokens.values())]
    fig = _figure(10.0, 1.6 + 0.32 * max(len(tasks), 1), layout=None)
    ax = fig.subplots()
    y = np.arange(len(tasks))
    left = np.zeros(len(tasks))
    totals = np.array([max(sum(audits[t].tokens.values()), 1) for t in tasks], dtype=np.float64)
    # Gato's modalities, plus any other scheme's the config has (MGDT's return-to-go, reward)
    names = list(dict.fromkeys([*MODALITY_NAMES, *(n for t in tasks for n in audits[t].tokens)]))
    for name in names:
        share = np.array([audits[t].tokens.get(name, 0) for t in tasks]) / totals * 100.0
        ax.barh(y, share, left=left, color=MODALITY_COLORS[name], label=name, height=0.7,
                edgecolor="white", linewidth=0.3)
        for yi, (x0, sh) in enumerate(zip(left, share, strict=True)):
            if sh >= 6.0:  # label segments wide enough to hold their number
                ax.text(x0 + sh / 2, yi, f"{sh:.1f}%", ha="center", va="center", fontsize=7,
                        color="white" if name in ("image", "separator", "action") else "black")
        left += share
    labels = [textwrap.shorten(t, 40, placeholder="...") for t in tasks]
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("share of stored tokens (%), padding included")
    ax.set_title(f"{config}: token mix by modality", loc="left")
    fig.legend(*ax.get_legend_handles_labels(), ncols=len(names), loc="lower center",
               bbox_to_anchor=(0.5, 0.0), fontsize=7, frameon=False)
    _place(fig, (ax,), left=0.2 + max((_tick_text_in(t) for t in labels), default=0.0), right=0.15,
           top=0.3, bottom=0.75)
    return fig


def _show_image(ax, img: np.ndarray) -> None:
    if img.shape[-1] == 1:
        ax.imshow(img[..., 0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    else:
        ax.imshow(img[..., :3], interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def _action_text(step) -> str:
    if step.action_kind == "none" or len(step.actions) == 0:
        return "no action"
    if step.action_kind == "discrete":
        vals = ", ".join(str(int(a)) for a in step.actions[:4])
    else:
        vals = ", ".join(f"{a:+.2f}" for a in step.actions[:3])
    more = ", ..." if len(step.actions) > (4 if step.action_kind == "discrete" else 3) else ""
    return f"action [{vals}{more}]"


def _caption(step, width: int) -> str:
    if step.text is not None:
        return textwrap.fill(step.text, width)
    if len(step.text_tokens):
        ids = " ".join(str(t) for t in step.text_tokens[:12])
        return textwrap.fill(f"text token ids: {ids}" + (" ..." if len(step.text_tokens) > 12
                                                         else ""), width)
    return ""


@_styled
def example_png(config: str, seq: DecodedSequence, first_step: int | None):
    """One stored sequence decoded: frames with their actions, captions, decoded values."""
    steps = seq.steps
    vl = bool(steps) and all(s.action_kind == "none" for s in steps)
    title = (f"{config}: example sequence decoded from its tokens "
             f"({len(steps)} {'pairs' if vl else 'timesteps'}, {seq.length - seq.pad} tokens + "
             f"{seq.pad} padding)")
    if vl:
        return _vl_figure(title, steps[:MAX_PAIRS])
    return _rl_figure(title, seq, first_step)


def _suptitle(fig, title: str, width_in: float) -> None:
    fig.suptitle(textwrap.fill(title, int(width_in * 12)), fontsize=9, x=0.01, ha="left")


def _integer_axis(axis) -> None:
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def _vl_figure(title: str, steps: Sequence):
    width = max(2.3 * max(len(steps), 1) + 0.4, 7.0)
    fig = _figure(width, 3.8)
    axes = np.atleast_1d(fig.subplots(1, max(len(steps), 1)))
    for k, (ax, step) in enumerate(zip(axes, steps, strict=False)):
        if step.images:
            _show_image(ax, step.images[0])
        else:
            ax.axis("off")
        ax.set_title(f"pair #{k}", fontsize=7)
        ax.set_xlabel(_caption(step, 30), fontsize=7)
    _suptitle(fig, title, width)
    return fig


def _rl_figure(title: str, seq: DecodedSequence, first_step: int | None):
    steps = seq.steps
    shown = steps[:MAX_FRAMES]
    n_img = max((len(s.images) for s in shown), default=0)
    has_obs = any(len(s.continuous_obs) for s in steps)
    actions = [s.actions for s in steps if len(s.actions)]
    rows_img = n_img
    rows_plot = (1 if actions else 0) + (1 if has_obs and not n_img else 0)
    heights = [1.5] * rows_img + [1.8] * rows_plot
    width = max(2.0 * len(shown), 8.0)
    fig = _figure(width, max(sum(heights) + 0.9, 2.5))
    cols = max(len(shown), 1)
    grid = fig.add_gridspec(max(len(heights), 1), cols, height_ratios=heights or [1.0])
    labels, n_main = [], 0
    for k, step in enumerate(shown):
        if step.is_prompt:
            labels.append(f"#{k}: prompt")
        else:
            labels.append(f"#{k}: episode step {first_step + n_main}" if first_step is not None
                          else f"#{k}")
            n_main += 1
    for r in range(rows_img):
        for k, step in enumerate(shown):
            ax = fig.add_subplot(grid[r, k])
            if r < len(step.images):
                _show_image(ax, step.images[r])
            else:
                ax.axis("off")
            if r == 0:
                ax.set_title(labels[k] + ("\n" + _caption(step, 24) if len(step.text_tokens)
                                          else ""), fontsize=7)
            if r == rows_img - 1:
                ax.set_xlabel(_action_text(step), fontsize=7)
    row = rows_img
    if has_obs and not n_img:
        ax = fig.add_subplot(grid[row, :])
        _obs_heatmap(ax, steps, seq.obs_mu_law)
        row += 1
    if actions:
        ax = fig.add_subplot(grid[row, :])
        _actions_plot(ax, steps, seq.action_mu_law)
    _suptitle(fig, title, width)
    return fig


def _inverse(mu_law: bool) -> str:
    return "bin centres, inverse mu-law" if mu_law else "bin centres; no mu-law for this field"


def _obs_heatmap(ax, steps: Sequence, mu_law: bool) -> None:
    width = max(len(s.continuous_obs) for s in steps)
    mat = np.full((width, len(steps)), np.nan, dtype=np.float32)
    for k, s in enumerate(steps):
        mat[:len(s.continuous_obs), k] = s.continuous_obs
    lim = float(np.nanmax(np.abs(mat))) if np.isfinite(mat).any() else 1.0
    im = ax.imshow(mat, aspect="auto", cmap="coolwarm", vmin=-lim, vmax=lim,
                   interpolation="nearest")
    ax.figure.colorbar(im, ax=ax, label="decoded value", fraction=0.03, pad=0.01)
    ax.set_ylabel("observation value #")
    ax.set_xlabel("timestep # within the sequence")
    _integer_axis(ax.xaxis)
    _integer_axis(ax.yaxis)
    ax.set_title(f"continuous observations decoded from their tokens ({_inverse(mu_law)})",
                 loc="left", fontsize=8)


def _actions_plot(ax, steps: Sequence, mu_law: bool) -> None:
    idx = [k for k, s in enumerate(steps) if len(s.actions)]
    kind = steps[idx[0]].action_kind
    width = max(len(steps[k].actions) for k in idx)
    mat = np.full((len(idx), width), np.nan)
    for r, k in enumerate(idx):
        mat[r, :len(steps[k].actions)] = steps[k].actions
    prompt = np.array([steps[k].is_prompt for k in idx])
    if prompt.any():
        xs = np.array(idx)[prompt]
        ax.axvspan(xs.min() - 0.5, xs.max() + 0.5, color="#eeeeee", label="prompt timesteps")
    for d in range(width):
        style = "-o" if kind == "discrete" or len(idx) <= 40 else "-"
        ax.plot(idx, mat[:, d], style, ms=3, lw=1, label=f"action[{d}]" if width <= 16 else None,
                drawstyle="steps-mid" if kind == "discrete" else "default")
    ax.set_xlabel("timestep # within the sequence")
    ax.set_ylabel("action id" if kind == "discrete" else "decoded action value")
    _integer_axis(ax.xaxis)
    if kind == "discrete":
        _integer_axis(ax.yaxis)
    how = "" if kind == "discrete" else f" ({_inverse(mu_law)})"
    ax.set_title(f"{kind} actions decoded from their tokens{how}", loc="left", fontsize=8)
    ax.grid(True, lw=0.3, alpha=0.6)
    if width <= 16 or prompt.any():
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0),
                  ncols=1 if width <= 6 else 2)
