"""Time the iceflow methods on Hintereisferner at 50 m and 100 m.

Each (method, resolution) runs in its own subprocess so that the peak
resident memory (ru_maxrss) is its own. Per call: median wall time of the
velocity computation after a warm-up (first call, with tracing/XLA
compilation, reported apart). Per simulated year: the per-step cost times
the steps a year takes under the time process's CFL rule (cfl 0.3,
dt = 0.3 dx / max|u|) with the default emulator retraining (`nbit` iterations
every `retrain_freq` steps). The `solved` warm-start step re-solves after a 0.1 %
thinning, from the previous field.

With ``--solver``: the `solved` method's convergence instead. From rest
(zero velocity; the second such solve, after tracing) and warm-started
(the previous field, after each time step of the benchmark century: the
1900 mass balance of bench/experiment/hef_century.yaml and the `thk`
transport with the solved velocity, dt = 0.3 dx / max|ubar|): iterations,
final scaled residual and wall time (warm: the median, and the largest,
which includes compiling the solver again when the ice outgrows its
window), and the relative L2 difference of
the surface speed over the ice against a solve taken to a residual of
1e-4.

Usage: python bench/bench_iceflow.py [--repeat 5] [--methods sia emulated solved]
       [--solver [--gtol 0.03]]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

METHODS = ("sia", "emulated", "solved")


def measure(method: str, k: int, repeat: int) -> dict[str, float]:
    """Timings of one method on the grid subsampled by k (in this process)."""
    import numpy as np
    import tensorflow as tf

    import igm_plugins.processes.iceflow as iceflow
    from igm_plugins.processes.iceflow._flow import IceFlow

    state, thk, _ = load(k)
    topg = np.asarray(state.topg)
    dx = 50.0 * k
    p = iceflow.Params(method=method)
    flow = IceFlow(p, state, None)
    out: dict[str, float] = {}
    t0 = time.perf_counter()
    flow.update(state, initial=True)
    out["first_call_s"] = time.perf_counter() - t0
    times = []
    for i in range(repeat):
        state.thk = tf.constant(thk * (1 - 1e-3 * (i + 1)))
        state.usurf = tf.constant(topg + thk * (1 - 1e-3 * (i + 1)))
        state.it = i + 1  # not a retraining step (those are timed apart)
        t0 = time.perf_counter()
        flow.update(state)
        _ = float(tf.reduce_sum(state.U))
        times.append(time.perf_counter() - t0)
    out["per_call_s"] = float(np.median(times))
    if method == "emulated":
        from igm_plugins._window import crop

        args = crop(flow.inputs(state), flow.emulator.window.current)  # as in a run
        flow.emulator.train(args, 2)
        t0 = time.perf_counter()
        flow.emulator.train(args, p.emulator.nbit)
        out["retrain_s"] = time.perf_counter() - t0
        step = out["per_call_s"] + out["retrain_s"] / p.emulator.retrain_freq
    else:
        step = out["per_call_s"]
    vmax = max(float(np.abs(np.asarray(state.ubar)).max()),
               float(np.abs(np.asarray(state.vbar)).max()), 1e-6)
    out["steps_per_year"] = vmax / (0.3 * dx)
    out["per_year_s"] = step * max(out["steps_per_year"], 1.0)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def load(k: int):
    """The Hintereisferner state subsampled by k, its thickness and its
    ice mask."""
    import importlib.resources as res

    import netCDF4
    import numpy as np

    from igm_core.testing import make_state

    path = res.files("igm_plugins.data") / "hintereisferner" / "input.nc"
    with netCDF4.Dataset(str(path)) as ds:
        thk = np.asarray(ds["thk"][:], "float32")[::k, ::k]
        topg = np.asarray(ds["topg"][:], "float32")[::k, ::k]
        icemask = np.asarray(ds["icemask"][:], "float32")[::k, ::k]
    state = make_state(nx=thk.shape[1], ny=thk.shape[0], dx=50.0 * k, thk=thk, topg=topg)
    return state, thk, icemask


def time_step(state, topg, icemask, dx: float) -> None:
    """Advance the geometry of ``state`` by one step of the benchmark
    century at its 1900 climate (mass balance 0.009 m/yr per m below the
    equilibrium line at 2950 m, 0.005 above, at most 2 m/yr of ice, no
    accumulation off ``icemask``, as `smb_simple` does) with the `thk`
    transport of its velocity; dt = 0.3 dx / max|ubar| (yr)."""
    import numpy as np
    import tensorflow as tf

    from igm_plugins.processes.smb_simple import mass_balance
    from igm_plugins.processes.thk import windowed_transport

    speed = float(tf.reduce_max(tf.abs(tf.stack([state.ubar, state.vbar]))))
    dt = 0.3 * dx / max(speed, 1e-6)
    _, _, div = windowed_transport(state, dt, "superbee")
    smb = np.asarray(mass_balance(state.usurf, gradabl=0.009, gradacc=0.005, ela=2950.0,
                                  accmax=2.0))
    smb = np.where(icemask > 0.5, smb, np.minimum(smb, 0.0))
    thk = np.maximum(np.asarray(state.thk) + dt * (smb - np.asarray(div)), 0.0)
    state.thk = tf.constant(thk, tf.float32)
    state.usurf = tf.constant(topg + thk, tf.float32)


def measure_solver(k: int, repeat: int, gtol: float | None) -> dict[str, float]:
    """Convergence of `solved` on the grid subsampled by k (in this
    process), to the tolerance ``gtol`` (None: the plugin's default)."""
    import numpy as np
    import tensorflow as tf

    import igm_plugins.processes.iceflow as iceflow
    from igm_plugins.processes.iceflow._flow import IceFlow

    state, thk, icemask = load(k)
    reports = []

    def solve(flow, args, X0):
        t0 = time.perf_counter()
        X = flow.solve(args, X0)
        _ = float(tf.reduce_sum(X))
        reports.append((time.perf_counter() - t0, flow.last_report))
        return X

    solver = iceflow.SolverParams() if gtol is None else iceflow.SolverParams(gtol=gtol)
    flow = IceFlow(iceflow.Params(method="solved", solver=solver), state, None)
    args = flow.inputs(state)
    zero = tf.zeros_like(flow.X)
    solve(flow, args, zero)  # traces and compiles
    X = solve(flow, args, zero)
    (t_rest, rest), = reports[1:]
    tight = IceFlow(iceflow.Params(method="solved", solver=iceflow.SolverParams(
        gtol=1e-4, nbitmax=2000)), state, None)
    Xt = tight.solve(args, zero)
    ice = thk > 0.1

    def speed(Y):
        return np.hypot(np.asarray(Y[0, -1]), np.asarray(Y[1, -1]))[ice]

    ref = speed(Xt)
    plain = IceFlow(iceflow.Params(method="solved", solver=iceflow.SolverParams(
        precondition=False)), state, None)
    plain.solve(args, zero)
    t0 = time.perf_counter()
    Xp = plain.solve(args, zero)
    out = {"plain_iterations": plain.last_report.iterations,
           "plain_residual": plain.last_report.residual, "plain_s": time.perf_counter() - t0,
           "plain_speed_error": float(np.linalg.norm(speed(Xp) - ref) / np.linalg.norm(ref)),
           "rest_iterations": rest.iterations, "rest_residual": rest.residual, "rest_s": t_rest,
           "rest_speed_error": float(np.linalg.norm(speed(X) - ref) / np.linalg.norm(ref)),
           "tight_residual": tight.last_report.residual,
           "tight_iterations": tight.last_report.iterations}
    flow.X = X
    flow.update(state)  # writes ubar, vbar for the first step
    topg = np.asarray(state.topg)
    for _ in range(repeat):
        time_step(state, topg, icemask, 50.0 * k)
        t0 = time.perf_counter()
        flow.update(state)
        _ = float(tf.reduce_sum(state.U))
        reports.append((time.perf_counter() - t0, flow.last_report))
    warm = reports[2:]
    out.update(warm_iterations=float(np.mean([r.iterations for _, r in warm])),
               warm_max_iterations=max(r.iterations for _, r in warm),
               warm_residual=max(r.residual for _, r in warm),
               warm_s=float(np.median([t for t, _ in warm])),
               warm_max_s=max(t for t, _ in warm))
    return out


def solver_table(repeat: int, gtol: float | None) -> None:
    """Print the `solved` convergence table, one subprocess per grid."""
    print("| grid | from rest: iterations | residual | time (s) | surface speed vs 1e-4 solve | "
          "warm: mean (max) iterations | max residual | median (max) time (s) | "
          "plain L-BFGS from rest: iterations, residual, time (s), speed |")
    print("|---|---|---|---|---|---|---|---|---|")
    for k, label in ((2, "100 m (90x110)"), (1, "50 m (180x220)")):
        extra = [] if gtol is None else ["--gtol", str(gtol)]
        res = subprocess.run([sys.executable, __file__, "--one-solver", str(k),
                              "--repeat", str(repeat), *extra], capture_output=True, text=True)
        if res.returncode != 0:
            print(f"| {label} | failed: {res.stderr.strip().splitlines()[-1]} |")
            continue
        r = json.loads(res.stdout.strip().splitlines()[-1])
        print(f"| {label} | {r['rest_iterations']} | {r['rest_residual']:.4f} | "
              f"{r['rest_s']:.2f} | {100 * r['rest_speed_error']:.2f} % | "
              f"{r['warm_iterations']:.1f} ({r['warm_max_iterations']}) | "
              f"{r['warm_residual']:.4f} | {r['warm_s']:.2f} ({r['warm_max_s']:.2f}) | "
              f"{r['plain_iterations']}, {r['plain_residual']:.3f}, {r['plain_s']:.2f}, "
              f"{100 * r['plain_speed_error']:.1f} % |",
              flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--solver", action="store_true",
                    help="the solved method's iterations, residual and time instead")
    ap.add_argument("--gtol", type=float, default=None,
                    help="with --solver: the solve's tolerance (default: the plugin's)")
    ap.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--one-solver", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(measure(args.one[0], int(args.one[1]), args.repeat)))
        return
    if args.one_solver:
        print(json.dumps(measure_solver(args.one_solver, args.repeat, args.gtol)))
        return
    import numpy as np
    import tensorflow as tf

    print(f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}; python {platform.python_version()}, "
          f"tensorflow {tf.__version__}, numpy {np.__version__}")
    if args.solver:
        solver_table(args.repeat, args.gtol)
        return
    print("| method | grid | first call (s) | per call (s) | retrain nbit it (s) | steps/yr | "
          "per sim. year (s) | peak RSS (MB) |")
    print("|---|---|---|---|---|---|---|---|")
    for k, label in ((2, "100 m (90x110)"), (1, "50 m (180x220)")):
        for method in args.methods:
            res = subprocess.run([sys.executable, __file__, "--one", method, str(k),
                                  "--repeat", str(args.repeat)], capture_output=True, text=True)
            if res.returncode != 0:
                print(f"| {method} | {label} | failed: {res.stderr.strip().splitlines()[-1]} |")
                continue
            r = json.loads(res.stdout.strip().splitlines()[-1])
            retrain = f"{r['retrain_s']:.3f}" if "retrain_s" in r else "-"
            print(f"| {method} | {label} | {r['first_call_s']:.2f} | {r['per_call_s']:.4f} | "
                  f"{retrain} | {r['steps_per_year']:.2f} | {r['per_year_s']:.3f} | "
                  f"{r['peak_rss_mb']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
