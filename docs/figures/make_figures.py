"""Draw the figures of docs/: the unrolled RNN with its BPTT flow, and im2col.

    python docs/figures/make_figures.py [--out DIR]

Writes ``bptt_unrolled.png`` and ``im2col.png`` next to this script (or into DIR). The PNGs in the repository
are this script's output; run it again after changing it. Needs matplotlib (``pip install -e '.[examples]'``).
"""

from __future__ import annotations

import argparse
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, Rectangle  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
FORWARD, BACKWARD, MASKED, SHARED = "black", "#c0392b", "#bbbbbb", "#2c6fbb"
PNG_METADATA = {"Software": None}  # no version string: the same drawing gives the same bytes


def _arrow(ax, start, end, color=FORWARD, style="-|>", dashed=False, rad=0.0, width=1.4):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=12, color=color, lw=width,
                                 linestyle=(0, (4, 3)) if dashed else "-", connectionstyle=f"arc3,rad={rad}",
                                 shrinkA=2, shrinkB=2))


def _cell(ax, x, y, label, masked=False, w=1.1, h=0.8):
    face = "#eeeeee" if masked else "#fdf6e3"
    ax.add_patch(Rectangle((x - w / 2, y - h / 2), w, h, facecolor=face, edgecolor=MASKED if masked else FORWARD,
                           hatch="//" if masked else None, lw=1.4))
    ax.text(x, y, label, ha="center", va="center", fontsize=10, color="#777777" if masked else FORWARD)


def _unrolled(ax, T, masked_step, x0=0.0, final_label=True):
    """One unrolled call on ``ax``: returns the x positions of h_0 ... h_T."""
    step = 2.2
    hx = [x0 + step * t for t in range(T + 1)]  # where h_t is drawn
    hy, lane = 2.0, 1.2  # the states' row, and the row of the backward δh flow under the cells
    for t in range(1, T + 1):
        cx = (hx[t - 1] + hx[t]) / 2
        masked = t == masked_step
        colour = MASKED if masked else FORWARD
        _cell(ax, cx, hy + 0.05, f"$m_{t} = 0$" if masked else "cell\n$W, U, b$", masked=masked)
        ax.text(cx, 0.1, f"$x_{t}$", ha="center", va="center", fontsize=11)
        _arrow(ax, (cx - 0.2, 0.3), (cx - 0.2, hy - 0.37), color=colour)
        _arrow(ax, (hx[t - 1] + 0.25, hy), (cx - 0.57, hy), color=colour)
        _arrow(ax, (cx + 0.57, hy), (hx[t] - 0.25, hy), color=colour)
        if masked:  # the carry: h_t = h_{t-1}, drawn over the cell
            _arrow(ax, (hx[t - 1] + 0.2, hy + 0.15), (hx[t] - 0.2, hy + 0.15), rad=-0.55, width=1.8)
            ax.text(cx, hy + 0.95, f"$h_{t} = h_{t - 1}$", ha="center", fontsize=9)
        else:  # δx_t leaves the cell downwards (a masked step sends none)
            _arrow(ax, (cx + 0.25, hy - 0.37), (cx + 0.25, 0.3), color=BACKWARD, dashed=True)
            ax.text(cx + 0.33, 0.45, rf"$\delta x_{t}$", color=BACKWARD, fontsize=9)
        # δh_t -> δh_{t-1}: under the cell (through the cell's backward, or straight over a masked step)
        _arrow(ax, (hx[t] - 0.05, lane), (hx[t - 1] + 0.05, lane), color=BACKWARD, dashed=True)
    for t in range(T + 1):
        ax.text(hx[t], hy, f"$h_{t}$", ha="center", va="center", fontsize=11,
                bbox={"boxstyle": "circle,pad=0.25", "fc": "white", "ec": FORWARD})
        ax.text(hx[t], lane - 0.12, rf"$\delta h_{t}$", color=BACKWARD, fontsize=9, ha="center", va="top")
        if t >= 1:  # outputs y_t = s_t h_t and their gradients δy_t
            _arrow(ax, (hx[t], hy + 0.3), (hx[t], 3.45))
            ax.text(hx[t], 3.7, f"$y_{t}$", ha="center", fontsize=11)
            _arrow(ax, (hx[t] + 0.22, 3.5), (hx[t] + 0.22, hy + 0.32), color=BACKWARD, dashed=True)
            ax.text(hx[t] + 0.3, 3.05, rf"$\delta y_{t}$", color=BACKWARD, fontsize=9)
    if final_label:
        ax.text(hx[T] + 0.35, hy - 0.05, r"$\delta h_T$ (return_state)", color=BACKWARD, fontsize=8, va="top")
    return hx


def bptt_figure(path: pathlib.Path) -> None:
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7.0), gridspec_kw={"height_ratios": [4.6, 3.4]})
    T = 4
    hx = _unrolled(top, T, masked_step=3)
    mid = hx[0] + (hx[-1] - hx[0]) / 2
    top.text(mid, -0.35, r"one $W, U, b$ in every cell:  $\delta U = \sum_t \tilde h_{t-1}^\top \delta z_t$, "
             r"$\delta W = \sum_t \tilde x_t^\top \delta z_t$  (a masked step adds nothing)", ha="center", va="top",
             fontsize=10, color=SHARED, bbox={"fc": "white", "ec": SHARED, "boxstyle": "round,pad=0.3"})
    top.text(hx[0] - 0.15, 0.75, "returned when the\ncall had initial_state", color=BACKWARD, fontsize=8,
             ha="center", va="top")
    top.set_title("(a) forward (black) and BPTT (red, dashed) through one call, T = 4; step 3 is masked: "
                  r"$h_t = m_t h_t' + (1 - m_t) h_{t-1}$", fontsize=10)
    top.set_xlim(-1.2, hx[-1] + 1.6)
    top.set_ylim(-0.9, 4.0)

    # (b) stateful=True: two calls, the state carried over as a constant (truncated BPTT)
    left = _unrolled(bottom, 2, masked_step=None, final_label=False)
    right = _unrolled(bottom, 2, masked_step=None, x0=left[-1] + 4.0, final_label=False)
    _arrow(bottom, (left[-1] + 0.3, 2.25), (right[0] - 0.3, 2.25), rad=-0.25, width=1.8)
    gap = (left[-1] + right[0]) / 2
    bottom.text(gap + 0.5, 3.0, "the final state of batch k\nis batch k+1's initial state", ha="center", va="bottom",
                fontsize=8)
    bottom.plot([gap, gap], [-0.1, 2.0], color=BACKWARD, lw=2)
    bottom.text(gap, -0.2, "no gradient crosses: the $\\delta h_0$\nof batch k+1 is dropped", ha="center",
                va="top", fontsize=8, color=BACKWARD)
    bottom.set_title("(b) stateful=True: each call runs BPTT over its own T steps only (truncated BPTT)", fontsize=10)
    bottom.set_xlim(-1.0, right[-1] + 1.0)
    bottom.set_ylim(-1.0, 4.2)
    for ax in (top, bottom):
        ax.set_aspect("equal")
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata=PNG_METADATA)
    plt.close(fig)


def _grid(ax, x0, y0, rows, cols, labels, title, shade=None, highlight=None, cell=0.62, hatch_rows=()):
    """A matrix drawn as cells: ``labels[r][c]`` in each; ``highlight`` = (row range, colour)."""
    for r in range(rows):
        for c in range(cols):
            face = "white"
            if shade is not None and shade(r, c):
                face = shade(r, c)
            ax.add_patch(Rectangle((x0 + c * cell, y0 - (r + 1) * cell), cell, cell, facecolor=face,
                                   edgecolor="#555555", lw=0.8, hatch="///" if r in hatch_rows else None))
            ax.text(x0 + (c + 0.5) * cell, y0 - (r + 0.5) * cell, labels[r][c], ha="center", va="center",
                    fontsize=7.5)
    if highlight is not None:
        (r0, r1), color = highlight
        ax.add_patch(Rectangle((x0 - 0.04, y0 - r1 * cell - 0.04), cols * cell + 0.08, (r1 - r0) * cell + 0.08,
                               fill=False, edgecolor=color, lw=2.4))
    ax.text(x0 + cols * cell / 2, y0 + 0.35, title, ha="center", va="bottom", fontsize=9.5)


def im2col_figure(path: pathlib.Path) -> None:
    L, C, K, F, pl = 6, 2, 3, 2, 1  # 'same' padding with K = 3, s = 1, d = 1: one zero row each side
    Lp, Lo, t_hi, colour = L + 2 * pl, L, 2, "#e67e22"
    cell = 0.62
    fig, ax = plt.subplots(figsize=(11, 5.6))
    xp_labels = [["0"] * C if not (pl <= i < pl + L) else [f"$x_{{{i - pl},{c}}}$" for c in range(C)]
                 for i in range(Lp)]
    _grid(ax, 0.0, 0.0, Lp, C, xp_labels, r"$x^p$  $(L + p_l + p_r,\ C)$", hatch_rows=(0, Lp - 1),
          highlight=((t_hi, t_hi + K), colour))
    ax.text(-0.15, -(t_hi + K / 2) * cell, f"window\nof t = {t_hi}", ha="right", va="center", fontsize=8,
            color=colour)
    cols_labels = [[xp_labels[t + k][c] for k in range(K) for c in range(C)] for t in range(Lo)]
    x_cols = 3.2
    _grid(ax, x_cols, -cell, Lo, K * C, cols_labels, r"$A$ = im2col($x$)  $(L_o,\ K C)$: row $t$ = window $t$",
          shade=lambda r, c: ("#fbe3cf" if r == t_hi else ("#f4f4f4" if (c // C) % 2 else None)),
          highlight=((t_hi, t_hi + 1), colour))
    for k in range(K):
        ax.text(x_cols + (k * C + C / 2) * cell, -cell - Lo * cell - 0.25, f"tap k = {k}", ha="center",
                va="top", fontsize=8)
    _arrow(ax, (C * cell + 0.25, -(t_hi + K / 2) * cell), (x_cols - 0.15, -(t_hi + 1.5) * cell), color=colour)
    x_w = x_cols + K * C * cell + 0.9
    ax.text(x_w - 0.45, -cell - Lo * cell / 2, r"$\times$", fontsize=18, ha="center", va="center")
    w_labels = [[f"$W_{{{r // C},{r % C},{f}}}$" for f in range(F)] for r in range(K * C)]
    _grid(ax, x_w, -0.3, K * C, F, w_labels, r"$W^m$  $(K C,\ F)$", cell=cell)
    x_z = x_w + F * cell + 0.9
    ax.text(x_z - 0.45, -cell - Lo * cell / 2, "=", fontsize=18, ha="center", va="center")
    z_labels = [[f"$z_{{{t},{f}}}$" for f in range(F)] for t in range(Lo)]
    _grid(ax, x_z, -cell, Lo, F, z_labels, r"$z = A W^m$  $(L_o,\ F)$",
          shade=lambda r, c: "#fbe3cf" if r == t_hi else None, highlight=((t_hi, t_hi + 1), colour))
    ax.text(x_cols + K * C * cell / 2, -cell - Lo * cell - 0.75,
            "every input step is copied into up to K rows; the backward pass col2im adds each copy's gradient\n"
            r"back onto its step:  $dx = \mathrm{col2im}(dz\ W^{m\top})$,  $dW^m = A^\top dz$",
            ha="center", va="top", fontsize=9)
    ax.set_title(f"im2col for Conv1D: L = {L}, C = {C}, K = {K}, stride 1, padding 'same' ($p_l = p_r = 1$), "
                 f"F = {F}, one batch sample", fontsize=10)
    ax.set_xlim(-1.3, x_z + F * cell + 0.3)
    ax.set_ylim(-cell - Lo * cell - 1.55, 0.9)
    ax.set_aspect("equal")
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata=PNG_METADATA)
    plt.close(fig)


FIGURES = {"bptt_unrolled.png": bptt_figure, "im2col.png": im2col_figure}


def main(out: pathlib.Path = HERE) -> list[pathlib.Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, draw in FIGURES.items():
        draw(out / name)
        written.append(out / name)
    return written


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=HERE, help="folder for the PNGs (default: docs/figures)")
    for path in main(parser.parse_args().out):
        print(f"wrote {path}")
