"""A small glacier in a large domain: the per-step cost of ``vert_flow`` and
of ``thk``'s transport on the window around the ice against the whole grid.

A circular ice cap (``--cap`` cells across, 200 m thick at its centre,
flowing at 10 m/yr) in the middle of an N x N grid of 100 m cells with a
tilted bed; Nz 10. ``vert_flow``'s update as a run calls it, and
``thk``'s transport (fluxes, divergence, edge outflow), against the same
computation on the whole grid (the module's kernels called on the full
fields, as before the window); and ``thk``'s whole update (the transport,
then the mass balance and the budget sums over the grid). Medians of
``--repeat`` calls after a first one that traces.

Usage: python bench/bench_small_glacier.py [--sizes 200 1000 2000] [--cap 60]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable


def median_ms(f: Callable[[], object], repeat: int) -> float:
    """Median time of ``f()`` in ms (its result pulled to the host), after one call."""
    import numpy as np

    np.asarray(f())
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        np.asarray(f())
        times.append(1e3 * (time.perf_counter() - t0))
    return statistics.median(times)


def measure(n: int, cap: int, repeat: int) -> dict[str, float]:
    """Per-step times (ms) of vert_flow and thk, windowed and whole-grid."""
    import numpy as np
    import tensorflow as tf

    from igm_core.testing import make_state
    from igm_plugins.processes import thk, vert_flow

    nz, dx = 10, 100.0
    y, x = np.mgrid[0:n, 0:n]
    r2 = ((x - n / 2) ** 2 + (y - n / 2) ** 2) / (cap / 2) ** 2
    H = 200.0 * np.sqrt(np.clip(1.0 - r2, 0.0, None))
    U = np.where(H > 0, 10.0, 0.0)[None].repeat(nz, 0)
    state = make_state(nx=n, ny=n, dx=dx, thk=H, topg=1000.0 + 10.0 * x, U=U, V=0.5 * U,
                       ubar=U[0], vbar=0.5 * U[0], smb=np.zeros((n, n)))
    state.zeta = tf.constant(np.linspace(0.0, 1.0, nz), tf.float32)
    state.dt, state.t = 0.1, 0.0
    vp, tp = vert_flow.Params(), thk.Params()
    window = vert_flow.igm_process_initialize(vp, state)
    budget = thk.igm_process_initialize(tp, state)
    thk0 = state.thk

    def vert_window():
        vert_flow.igm_process_update(vp, state, window)
        return state.W

    def vert_whole():
        return vert_flow.vertical_velocity(state.U, state.V, state.zeta, state.thk, state.topg,
                                           dx)

    def transport_window():
        fx, fy, div = thk.windowed_transport(state, state.dt, tp.slope_type)
        thk.outflow_rate(fx, fy, dx)
        return div

    def transport_whole():
        fx, fy = thk.face_fluxes(thk0, *thk.node_to_face(state.ubar, state.vbar),
                                 state.dt / dx, tp.slope_type)
        thk.outflow_rate(fx, fy, dx)
        return thk.divergence(fx, fy, dx)

    def thk_update():
        state.thk = thk0
        thk.igm_process_update(tp, state, budget)
        return state.thk

    return {"vert_flow window": median_ms(vert_window, repeat),
            "vert_flow whole grid": median_ms(vert_whole, repeat),
            "transport window": median_ms(transport_window, repeat),
            "transport whole grid": median_ms(transport_whole, repeat),
            "thk update": median_ms(thk_update, repeat)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[200, 1000, 2000])
    ap.add_argument("--cap", type=int, default=60, help="ice cap diameter (cells)")
    ap.add_argument("--repeat", type=int, default=10)
    args = ap.parse_args()
    import numpy as np
    import tensorflow as tf

    print(f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}; python {platform.python_version()}, "
          f"tensorflow {tf.__version__}, numpy {np.__version__}")
    print(f"| grid (cap of {args.cap} cells) | vert_flow window (ms) | vert_flow whole grid | "
          "thk transport window (ms) | thk transport whole grid | thk update (ms) |")
    print("|---|---|---|---|---|---|")
    for n in args.sizes:
        r = measure(n, args.cap, args.repeat)
        print(f"| {n} x {n} | {r['vert_flow window']:.1f} | {r['vert_flow whole grid']:.1f} | "
              f"{r['transport window']:.1f} | {r['transport whole grid']:.1f} | "
              f"{r['thk update']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
