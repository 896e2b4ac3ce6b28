"""Process ``iceflow``: the 3-D ice velocity from Glen's flow law.

Methods (``method``):

- ``sia``: closed-form shallow-ice deformation plus Weertman sliding; with
  ``numerics.staggered`` also the depth means on the cell faces
  (``ubar_xface`` (ny, nx+1), ``vbar_yface`` (ny+1, nx), m/yr, staggered as
  in Mahaffy 1976) that the ``thk`` process then transports the ice with;
  the cell velocities written are then the means of their two faces.
- ``solved``: the Blatter-Pattyn velocity, minimiser of the convex energy
  (viscous dissipation + basal friction + work of gravity), found with
  TensorFlow autodiff (Adam or L-BFGS), warm-started each step.
- ``emulated`` (default): a convolutional network trained on the same
  energy (physics-informed), shipped pretrained, corrected by a solve of
  the run's glacier at the start and whenever it has changed by
  ``emulator.solve_change`` (default 5 %); with ``solve_change: 0``, the
  network alone, retrained online every ``emulator.retrain_freq`` steps.
- ``diagnostic``: emulator and solver side by side; logs their relative
  difference of surface speed and their energies.

Reads ``thk`` and ``usurf`` (m); ``arrhenius`` (MPa^-n/yr, 2-D or 3-D) and
``slidingco`` (MPa yr^(1/m) m^(-1/m)) when present, else sets them from
``physics.init_*``. Writes ``U``, ``V`` (Nz, ny, nx) m/yr on the levels
``zeta`` (0 = bed, 1 = surface) and the 2-D fields ubar, vbar, uvelsurf,
vvelsurf, uvelbase, vvelbase, velbar_mag, velsurf_mag (m/yr).

``physics.sliding: false`` gives a no-slip bed; ``slidingco`` 0 means free
slip in the energy methods and no sliding in ``sia``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from igm_core import Choice, Field, hookimpl
from igm_core.errors import ConfigError

KEY = "processes.iceflow"



class Method(Choice):
    emulated = "emulated"  # the CNN emulator, retrained on the energy as the run goes
    solved = "solved"  # the energy minimised on the grid at every update
    sia = "sia"  # the shallow-ice approximation (closed form)
    diagnostic = "diagnostic"  # emulated, compared with solved at every update


class Optimizer(Choice):
    adam = "adam"
    lbfgs = "lbfgs"


class Precision(Choice):
    auto = "auto"  # bfloat16 on a CPU with AVX512-BF16 or AMX and no GPU, else float32
    float32 = "float32"
    bfloat16 = "bfloat16"


class Activation(Choice):
    leaky_relu = "leaky_relu"
    relu = "relu"
    elu = "elu"
    gelu = "gelu"
    tanh = "tanh"
    swish = "swish"


@dataclass
class PhysicsParams:
    exp_glen: float = 3.0  # Glen's exponent n
    init_arrhenius: float = 78.0  # Glen's A when the input has none (MPa^-n yr^-1)
    enhancement_factor: float = 1.0  # multiplies A (dimensionless)
    regu_glen: float = 1e-5  # strain-rate regularisation eps_0 (yr^-1)
    sliding: bool = True  # False: no-slip bed (basal velocity zero, slidingco unused)
    init_slidingco: float = 0.0464  # Weertman C when the input has none (MPa yr^(1/m) m^(-1/m))
    exp_weertman: float = 3.0  # Weertman exponent m
    regu_weertman: float = 1e-10  # sliding-speed regularisation u_0 (m/yr)
    # a bed whose Weertman sliding speed at the driving stress is below this is frozen (m/yr)
    frozen_bed_speed: float = 1e-3
    ice_density: float = 910.0  # kg m^-3
    gravity_cst: float = 9.81  # m s^-2
    thr_ice_thk: float = 0.1  # thinner ice carries no flow (m)


@dataclass
class NumericsParams:
    Nz: int = 10  # number of vertical levels (>= 2)
    vert_spacing: float = 4.0  # top layer / bottom layer thickness ratio (1 = uniform)
    periodic: bool = False  # periodic lateral boundaries (benchmarks such as ISMIP-HOM)
    mean_slope_x: float = 0.0  # prescribed mean surface slope ds/dx added to grad(usurf) (m/m)
    mean_slope_y: float = 0.0  # prescribed mean surface slope ds/dy (m/m)
    jit: bool = True  # compile the energy with XLA
    staggered: bool = False  # sia: also write ubar/vbar on the cell faces (Mahaffy), used by thk


@dataclass
class SolverParams:
    optimizer: Optimizer = Optimizer.lbfgs  # adam | lbfgs
    step_size: float = 1.0  # Adam learning rate (m/yr)
    nbitmax: int = 300  # most iterations per solve
    precondition: bool = True  # L-BFGS on column-scaled variables (see the docs); false: plain
    # L-BFGS iterations before the column preconditioner is first rebuilt (each later run doubles)
    refresh: int = 20
    stop_rtol: float = 1e-6  # stop when the energy drops less than this (relative) ...
    stop_patience: int = 10  # ... over this many iterations
    # converged: gradient norm (column metric) at most this fraction of the driving stress's
    gtol: float = 1e-2
    require_convergence: bool = False  # an unconverged solve stops the run (else: a warning)


@dataclass
class NetworkParams:
    nb_layers: int = 8  # hidden convolution layers
    nb_out_filter: int = 32  # channels of each hidden layer
    conv_ker_size: int = 3  # kernel size (odd)
    activation: Activation = Activation.leaky_relu  # leaky_relu | relu | elu | gelu | tanh | swish
    # arithmetic of the convolutions (weights stay float32): auto | float32 | bfloat16
    precision: Precision = Precision.auto


@dataclass
class EmulatorParams:
    pretrained: bool = True  # start from the shipped (or `weights`) network
    weights: str = ""  # network file (.npz) to start from instead of the shipped one
    retrain_freq: int = 10  # without solve_change: retrain every this many steps (0 = never)
    nbit: int = 5  # training iterations per retraining
    nbit_init: int = 0  # training iterations at initialisation
    # > 0: the initial step, and every step where thk, arrhenius or
    # slidingco has changed by more than this fraction (relative L2 norm over the grid)
    # since the last solve, take their velocity from a solve (solver.*, to solve_gtol)
    # warm-started from the field below; every other step the network's field plus what
    # it missed at the last solve (no retraining on the energy). 0: the network alone,
    # retrained every retrain_freq steps. Method emulated only (ignored by the others)
    solve_change: float = 0.05
    solve_gtol: float = 0.05  # scaled residual of those solves (see solver.gtol)
    # largest ice window (cells: the ice's bounding box at the start plus 2 cells) that
    # solves correct; a larger one runs the network alone, retrained (the solves hold
    # about 5 kB per window cell, and cost several times the network's time there)
    solve_max_cells: int = 250_000
    lr: float = 5e-4  # Adam learning rate of the training
    warmup: int = 100  # training iterations over which the learning rate ramps up from 0
    framesizemax: int = 750  # largest frame side (cells) the network sees at once
    # largest frame side (cells) of one training iteration: a larger ice window
    # trains on a random frame this size (the training holds about 5 kB per cell)
    train_framesizemax: int = 256
    save_model: bool = False  # write the retrained network to the output folder
    network: NetworkParams = field(default_factory=NetworkParams)


@dataclass
class Params:
    method: Method = Method.emulated  # emulated | solved | sia | diagnostic
    physics: PhysicsParams = field(default_factory=PhysicsParams)
    numerics: NumericsParams = field(default_factory=NumericsParams)
    solver: SolverParams = field(default_factory=SolverParams)
    emulator: EmulatorParams = field(default_factory=EmulatorParams)

    def __post_init__(self) -> None:
        check_params(self)


def corrected_by_solves(p: Params) -> bool:
    """Whether solves correct the emulator (``emulator.solve_change`` > 0,
    method ``emulated``) instead of its retraining on the energy."""
    return p.method == "emulated" and p.emulator.solve_change > 0


def check_params(p: Params) -> None:
    """Raise ConfigError on a parameter outside its allowed values (run when
    the configuration builds ``Params``)."""
    positive = (("numerics.vert_spacing", p.numerics.vert_spacing),
                ("physics.exp_glen", p.physics.exp_glen),
                ("physics.exp_weertman", p.physics.exp_weertman),
                ("physics.init_arrhenius", p.physics.init_arrhenius),
                ("physics.enhancement_factor", p.physics.enhancement_factor),
                ("solver.step_size", p.solver.step_size), ("solver.nbitmax", p.solver.nbitmax),
                ("solver.refresh", p.solver.refresh),
                ("solver.gtol", p.solver.gtol),
                ("physics.frozen_bed_speed", p.physics.frozen_bed_speed),
                ("emulator.lr", p.emulator.lr), ("emulator.solve_gtol", p.emulator.solve_gtol),
                ("emulator.framesizemax", p.emulator.framesizemax),
                ("emulator.solve_max_cells", p.emulator.solve_max_cells),
                ("emulator.train_framesizemax", p.emulator.train_framesizemax))
    for key, value in positive:
        if not value > 0:
            raise ConfigError(f"{KEY}.{key} must be positive, got {value}")
    for key, value in (("emulator.warmup", p.emulator.warmup),
                       ("emulator.nbit", p.emulator.nbit),
                       ("emulator.nbit_init", p.emulator.nbit_init),
                       ("emulator.retrain_freq", p.emulator.retrain_freq),
                       ("emulator.solve_change", p.emulator.solve_change)):
        if value < 0:
            raise ConfigError(f"{KEY}.{key} must be 0 or more, got {value}")
    if p.numerics.Nz < 2:
        raise ConfigError(f"{KEY}.numerics.Nz must be at least 2, got {p.numerics.Nz}")
    if p.numerics.staggered and p.method != "sia":
        raise ConfigError(f"{KEY}.numerics.staggered applies to method sia only, got method "
                          f"'{p.method}'")
    if not p.emulator.pretrained and p.emulator.nbit_init <= 0 and p.method in (
            "emulated", "diagnostic"):
        raise ConfigError(f"{KEY}.emulator.pretrained is false: set emulator.nbit_init > 0 to "
                          "train the network first")
    if p.emulator.network.conv_ker_size % 2 != 1:
        raise ConfigError(f"{KEY}.emulator.network.conv_ker_size must be odd, got "
                          f"{p.emulator.network.conv_ker_size}")


requires = ("thk", "usurf")

ZETA = Field("zeta", "1", "relative height of the ice-flow levels above the bed", dims=("z",))

provides = ("U", "V", "ubar", "vbar", "uvelsurf", "vvelsurf", "uvelbase", "vvelbase",
            "velbar_mag", "velsurf_mag", "arrhenius", "slidingco", ZETA)


@hookimpl
def igm_process_initialize(params: Params, state, run):
    from igm_plugins.processes.iceflow._flow import IceFlow

    flow = IceFlow(params, state, run)
    if run.restart is None:  # a continued run gets its velocities from the checkpoint
        flow.update(state, initial=True)
    return flow


@hookimpl
def igm_process_update(state, memory) -> None:
    memory.update(state)


@hookimpl
def igm_process_finalize(run, memory) -> None:
    memory.finalize(run)
