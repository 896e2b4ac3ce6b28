"""The iceflow process at run time: the memory of the process (solver and
emulator state kept between steps, saved in checkpoints) and the writing of
the velocity fields."""

from __future__ import annotations

import logging
import math

import numpy as np
import tensorflow as tf

from igm_core.errors import ConfigError, PluginRuntimeError
from igm_plugins._window import IceWindow, crop, ice_window, uncrop
from igm_plugins.processes.iceflow import KEY, Params, corrected_by_solves
from igm_plugins.processes.iceflow._physics import (
    FlowConstants,
    derived_fields,
    energy,
    hold_velocities,
    sia_staggered,
    sia_velocity,
    sliding_nodes,
    vertical_levels,
)
from igm_plugins.processes.iceflow._solver import make_objective, minimise

log = logging.getLogger("igm.processes.iceflow")
NOSLIP_C = 1e4  # MPa: the Weertman C standing for a no-slip node (frozen at any driving stress)
SOLVER_MARGIN = 2  # cells around the ice in the solver's window


def constants(p: Params) -> FlowConstants:
    """The flow constants of the parameters (rho g in MPa/m)."""
    ph = p.physics
    return FlowConstants(n=ph.exp_glen, m=ph.exp_weertman, enhancement=ph.enhancement_factor,
                         regu_glen=ph.regu_glen, regu_weertman=ph.regu_weertman,
                         rho_g=ph.ice_density * ph.gravity_cst * 1e-6,
                         thr_ice_thk=ph.thr_ice_thk, sliding=ph.sliding,
                         frozen_bed_speed=ph.frozen_bed_speed)


class IceFlow:
    """Per-run state of the iceflow process."""

    def __init__(self, params: Params, state, run) -> None:
        self.p = params
        self.consts = constants(params)
        self.zeta_np = vertical_levels(params.numerics.Nz, params.numerics.vert_spacing)
        self.zeta = tf.constant(self.zeta_np)
        state.zeta = self.zeta
        self.slope = tf.constant([params.numerics.mean_slope_x, params.numerics.mean_slope_y],
                                 dtype=tf.float32)
        shape = state.grid.shape
        if not state.has("arrhenius"):
            state.arrhenius = tf.fill(shape, tf.constant(params.physics.init_arrhenius, tf.float32))
        if not state.has("slidingco"):
            state.slidingco = tf.fill(shape, tf.constant(params.physics.init_slidingco,
                                                         tf.float32))
        nz = params.numerics.Nz
        self.X = tf.zeros((2, nz, *shape), tf.float32)
        self.objective = None
        self.emulator = None
        self.start_cells = self.window_cells(state)
        self.corrected = (corrected_by_solves(params)
                          and self.start_cells <= params.emulator.solve_max_cells)
        if params.method in ("solved", "diagnostic") or self.corrected:
            self.objective = make_objective(self.consts, self.zeta, self.slope,
                                            params.numerics.periodic, params.numerics.jit)
        if params.method in ("emulated", "diagnostic"):
            from igm_plugins.processes.iceflow._emulator import Emulator

            self.emulator = Emulator(params, self.consts, self.zeta, self.slope, run)
        self.history: list[dict[str, float]] = []
        self.last_report = None  # the last solve's SolveReport
        # solves so far, the unconverged ones and the largest scaled residual
        self.convergence = {"solves": 0, "unconverged": 0, "max_residual": 0.0}
        self.t = math.nan  # model time of the current update (yr)
        # emulator.solve_change: (thk, arrhenius, slidingco) at the last solve, and that
        # solve minus the network's field there (m/yr), added to the network's later fields
        self.solved_inputs: tuple[tf.Tensor, ...] | None = None
        self.correction = tf.zeros_like(self.X)
        self.window = IceWindow(SOLVER_MARGIN, self.consts.thr_ice_thk, KEY)  # the solver's
        self._finish = tf.function(self._mask_and_derive, reduce_retracing=True,
                                   autograph=False)

    def window_cells(self, state) -> int:
        """Cells of the solver's window around the ice of ``state`` (its
        bounding box plus 2 cells, rounded up; the whole grid when periodic;
        0 without ice)."""
        ny, nx = state.grid.shape
        if self.p.numerics.periodic:
            return ny * nx
        window = ice_window(np.asarray(state.thk) > self.consts.thr_ice_thk, SOLVER_MARGIN)
        return 0 if window is None else ((window[0].stop - window[0].start)
                                         * (window[1].stop - window[1].start))

    def _mask_and_derive(self, X, args, ubar, vbar):
        thk, usurf, _, C, dx = args
        slides = sliding_nodes(thk, usurf, C, dx, self.slope, self.consts,
                               self.p.numerics.periodic)
        X = hold_velocities(X, thk, slides, self.consts)
        return X, derived_fields(X[0], X[1], self.zeta_np, ubar, vbar)

    def inputs(self, state) -> tuple[tf.Tensor, ...]:
        """(thk, usurf, arrhenius, slidingco, dx) as float32 tensors; where
        the State's ``noslip`` mask is 1, slidingco is :data:`NOSLIP_C`,
        a bed so stiff that it is frozen."""
        f32 = tf.float32
        C = tf.cast(state.slidingco, f32)
        if state.has("noslip"):
            C = tf.where(tf.cast(state.noslip, f32) > 0.5, NOSLIP_C, C)
        return (tf.cast(state.thk, f32), tf.cast(state.usurf, f32),
                tf.cast(state.arrhenius, f32), C, tf.constant(state.dx, f32))

    def energy_of(self, X: tf.Tensor, args: tuple) -> float:
        """Energy (MPa m/yr per ice node) of the velocity stack X."""
        return float(energy(X[0], X[1], *args, self.zeta, self.slope, self.consts,
                            self.p.numerics.periodic))

    def gtol(self) -> tuple[str, float]:
        """The parameter holding this method's solve tolerance, and its value."""
        if self.p.method == "emulated":
            return "emulator.solve_gtol", self.p.emulator.solve_gtol
        return "solver.gtol", self.p.solver.gtol

    def solve(self, args: tuple, X0: tf.Tensor) -> tf.Tensor:
        """Blatter-Pattyn solve warm-started from X0, on the window around the
        ice (ice-free nodes carry no flow; the whole grid when periodic), to
        the tolerance of :meth:`gtol`."""
        s = self.p.solver
        thk = args[0]
        window = None
        if not self.p.numerics.periodic:
            window = self.window.follow(thk)
            if window is None:
                return tf.zeros_like(X0)
            args, X0 = crop(args, window), X0[(slice(None), slice(None), *window)]
        X_metric = None
        if not bool(tf.reduce_any(X0 != 0.0)):  # from rest: first scales at the shallow ice
            U, V, _, _ = sia_velocity(*args[:4], float(args[4]), self.zeta,
                                      tuple(self.slope.numpy()), self.consts,
                                      self.p.numerics.periodic)
            X_metric = tf.stack([U, V])
        X, report = minimise(self.objective, X0, args, s.optimizer, s.step_size, s.nbitmax,
                             s.stop_rtol, s.stop_patience, gtol=self.gtol()[1],
                             refresh=s.refresh,
                             X_metric=X_metric, precondition=s.precondition)
        self.last_report = report
        if window is not None:
            X = uncrop(X, window, thk.shape)
        log.debug("iceflow solve: %d iterations, energy %.6g -> %.6g, scaled residual %.3g",
                  report.iterations, report.energy_start, report.energy_end, report.residual)
        self.count(report)
        return X

    def count(self, report) -> None:
        """Record a solve's convergence; an unconverged one is an error with
        ``solver.require_convergence``, else a warning (the first of the run;
        the later ones at debug level and in the run's summary)."""
        c, s = self.convergence, self.p.solver
        gtol_key, gtol = self.gtol()
        c["solves"] += 1
        c["max_residual"] = max(c["max_residual"], report.residual)
        if report.converged:
            return
        c["unconverged"] += 1
        when = f"at t={self.t:g} yr" if math.isfinite(self.t) else "at the initial state"
        message = (f"{KEY}: the solve {when} did not converge: scaled residual "
                   f"{report.residual:.3g} (gradient norm over the driving stress's) above "
                   f"{gtol_key}={gtol:g} after {report.iterations} iterations "
                   f"(solver.nbitmax={s.nbitmax})")
        if s.require_convergence:
            raise PluginRuntimeError(f"{message}; solver.require_convergence is true")
        level = logging.WARNING if c["unconverged"] == 1 else logging.DEBUG
        log.log(level, "%s; the velocity is the last iterate (later ones are counted in "
                "run_summary.json)", message)

    def summary(self) -> dict[str, object] | None:
        """The solver's convergence over the run, for ``run_summary.json``
        (None without a solver)."""
        if self.objective is None:
            return None
        return {**self.convergence, "gtol": self.gtol()[1]}

    def update(self, state, initial: bool = False) -> None:
        """Compute the velocity for the current geometry and write it."""
        args = self.inputs(state)
        method = self.p.method
        self.t = float(state.t)
        ubar = vbar = None
        if initial and corrected_by_solves(self.p) and not self.corrected:
            e = self.p.emulator
            log.warning("%s: the ice window has %d cells, more than emulator.solve_max_cells="
                        "%d: no correcting solves, the network runs alone (retrained every %d "
                        "steps)", KEY, self.start_cells, e.solve_max_cells, e.retrain_freq)
        if method == "sia":
            X, ubar, vbar = self.sia(args, state)
        elif method == "solved":
            X = self.solve(args, self.X)
        elif method == "emulated":
            X = self.emulated(args, state.it, initial)
        else:
            X = self.emulator.step(args, state.it, initial)
            Xs = self.solve(args, self.X if not initial else X)
            self.log_difference(state, X, Xs, args)
            X = Xs
        X, derived = self._finish(X, args, ubar, vbar)
        self.X = X
        state.U, state.V = X[0], X[1]
        for name, value in derived.items():
            setattr(state, name, value)

    def emulated(self, args: tuple, it: int, initial: bool) -> tf.Tensor:
        """The network's velocity (2, Nz, ny, nx) m/yr. With
        ``emulator.solve_change``, the initial step's, and that of every step
        whose inputs have changed by more than that since the last solve (see
        :meth:`change`), is instead a solve warm-started from the field below;
        every other step's is the network's field plus the last solve's
        correction (that solve minus the network's field on its inputs)."""
        e = self.p.emulator
        net = self.emulator.step(args, it, initial, retrain=not self.corrected)
        if not self.corrected:
            return net
        X = net + self.correction
        inputs = (args[0], args[2], args[3])  # thk, arrhenius, slidingco
        if not initial and self.change(inputs) <= e.solve_change:
            return X
        X = self.solve(args, X)
        self.correction = X - net
        self.solved_inputs = inputs
        return X

    def change(self, inputs: tuple[tf.Tensor, ...]) -> float:
        """The largest relative change (L2 norm over the grid, dimensionless)
        of ``inputs`` (thk, arrhenius, slidingco) since the last solve;
        infinite before any."""
        if self.solved_inputs is None:
            return math.inf
        return float(tf.reduce_max([tf.norm(b - a) / tf.maximum(tf.norm(a), 1e-30)
                                    for a, b in zip(self.solved_inputs, inputs, strict=True)]))

    def sia(self, args: tuple, state) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """Shallow-ice velocities: the stack (U, V) (2, Nz, ny, nx) and ubar,
        vbar (ny, nx), m/yr; with ``numerics.staggered``, the face velocities
        ``ubar_xface``, ``vbar_yface`` are written into ``state`` and the
        cell velocities are the means of their faces."""
        thk, usurf, A, C, dx = args
        flow = sia_staggered if self.p.numerics.staggered else sia_velocity
        U, V, ubar, vbar, *faces = flow(thk, usurf, A, C, float(dx), self.zeta,
                                        tuple(self.slope.numpy()), self.consts,
                                        self.p.numerics.periodic)
        if faces:
            state.ubar_xface, state.vbar_yface = faces
        return tf.stack([U, V]), ubar, vbar

    def log_difference(self, state, Xe: tf.Tensor, Xs: tf.Tensor, args: tuple) -> None:
        """Log the emulator-solver difference of surface speed over ice and both
        energies; kept in ``self.history``. The line names the model time, or
        the initial state when the clock has not started yet (iceflow listed
        before ``time`` initialises first: ``state.t`` is still nan)."""
        ice = np.asarray(args[0]) > self.consts.thr_ice_thk
        se = np.hypot(np.asarray(Xe[0, -1]), np.asarray(Xe[1, -1]))[ice]
        ss = np.hypot(np.asarray(Xs[0, -1]), np.asarray(Xs[1, -1]))[ice]
        rel = float(np.linalg.norm(se - ss) / max(np.linalg.norm(ss), 1e-12))
        row = {"t": float(state.t), "rel_diff_velsurf": rel,
               "energy_emulated": self.energy_of(Xe, args),
               "energy_solved": self.energy_of(Xs, args)}
        self.history.append(row)
        when = f"t={row['t']:g}" if math.isfinite(row["t"]) else "initial state"
        log.info("iceflow diagnostic %s: relative L2 difference of surface speed %.4f, "
                 "energy emulated %.6g, solved %.6g", when, rel, row["energy_emulated"],
                 row["energy_solved"])

    def state_dict(self) -> dict[str, object]:
        """What a checkpoint keeps: the last velocity stack (the solver's warm
        start), the solver's window, the diagnostic history, the emulator,
        whether solves correct it (decided at the start) and with
        ``emulator.solve_change`` the inputs of the last solve and the
        correction."""
        return {"X": self.X, "window": self.window.state_dict(), "history": self.history,
                "corrected": self.corrected,
                "convergence": self.convergence, "solved_inputs": self.solved_inputs,
                "correction": self.correction,
                "emulator": None if self.emulator is None else self.emulator.state_dict()}

    def load_state_dict(self, saved: dict) -> None:
        """Restore :meth:`state_dict`; ConfigError when it does not fit."""
        X = tf.convert_to_tensor(saved["X"], tf.float32)
        if X.shape != self.X.shape:
            raise ConfigError(f"{KEY}: the checkpoint's velocities have shape {tuple(X.shape)}, "
                              f"this configuration {tuple(self.X.shape)} (numerics.Nz differs?)")
        if (saved["emulator"] is None) != (self.emulator is None):
            raise ConfigError(f"{KEY}: the checkpoint was written with another method "
                              f"(the configuration has method '{self.p.method}')")
        self.X = X
        self.window.load_state_dict(saved["window"])
        # decided at the start of the run, from the ice window then (absent from
        # checkpoints written before emulator.solve_max_cells existed: as decided here)
        self.corrected = bool(saved.get("corrected", self.corrected))
        if self.corrected and self.objective is None:
            self.objective = make_objective(self.consts, self.zeta, self.slope,
                                            self.p.numerics.periodic, self.p.numerics.jit)
        self.history = list(saved["history"])
        self.convergence = dict(saved["convergence"])
        # absent from checkpoints written before emulator.solve_change existed: the
        # next step solves
        self.solved_inputs = saved.get("solved_inputs")
        self.correction = tf.convert_to_tensor(saved.get("correction", tf.zeros_like(X)),
                                               tf.float32)
        if self.emulator is not None:
            self.emulator.load_state_dict(saved["emulator"])

    def finalize(self, run) -> None:
        """Save the retrained network when asked."""
        if self.emulator is not None and self.p.emulator.save_model:
            self.emulator.save(run.output_dir / "iceflow_emulator.npz")
