"""The `emulated` method: a fully convolutional network trained on the
Blatter-Pattyn energy itself (physics-informed, Jouvet & Cordonnier 2023).

Raw TensorFlow: the weights are tf.Variables, the layers tf.nn.conv2d. Input
features per node (computed from thk, usurf, arrhenius, slidingco and dx):
thickness, the two surface slopes, A, log C and the cell size, scaled to
order one. Output: U and V on all Nz levels (m/yr, ``VEL_SCALE`` times the
last layer). Large grids are cut into overlapping frames of at most
``framesizemax`` cells a side.
"""

from __future__ import annotations

import itertools
import logging
from importlib import resources
from pathlib import Path

import numpy as np
import tensorflow as tf

from igm_core.compile_cache import cpuinfo
from igm_core.errors import ConfigError, DataError
from igm_plugins._window import IceWindow, crop, uncrop
from igm_plugins.processes.iceflow import KEY
from igm_plugins.processes.iceflow._physics import FlowConstants, node_gradient
from igm_plugins.processes.iceflow._solver import make_objective

log = logging.getLogger("igm.processes.iceflow")

SHIPPED = "emulator_weights.npz"
NIN = 6
VEL_SCALE = 50.0  # m/yr per unit network output
ARCH_KEYS = ("Nz", "vert_spacing", "nb_layers", "nb_out_filter", "conv_ker_size", "activation")


def features(thk: tf.Tensor, usurf: tf.Tensor, arrhenius: tf.Tensor, slidingco: tf.Tensor,
             dx: tf.Tensor, slope: tf.Tensor, periodic: bool) -> tf.Tensor:
    """Network input (ny, nx, 6): H/500 m, 5 ds/dx, 5 ds/dy, A/78, ln(C/0.0464)/3,
    dx/100 m."""
    gx, gy = node_gradient(usurf, dx, periodic)
    A = arrhenius if arrhenius.shape.rank == 2 else tf.reduce_mean(arrhenius, axis=0)
    C = tf.math.log(tf.maximum(slidingco, 1e-4) / 0.0464) / 3.0
    return tf.stack([thk / 500.0, 5.0 * (gx + slope[0]), 5.0 * (gy + slope[1]), A / 78.0, C,
                     tf.ones_like(thk) * dx / 100.0], axis=-1)


def compute_dtype(precision: str, cpu_flags: set[str] | None = None,
                  gpu: bool | None = None) -> tf.DType:
    """The dtype the network computes in for ``precision``: ``float32``;
    ``bfloat16`` (ConfigError where TensorFlow cannot run it on this CPU);
    or ``auto``: bfloat16 where the CPU multiplies it natively (the
    ``avx512_bf16`` or ``amx_bf16`` instructions among its ``cpu_flags``,
    by default this machine's) and no GPU runs the network, else
    float32."""
    if precision == "float32":
        return tf.float32
    if gpu is None:
        gpu = bool(tf.config.list_logical_devices("GPU"))
    if precision == "bfloat16":
        if not gpu and not bfloat16_runs():
            raise ConfigError(f"{KEY}.emulator.network.precision: bfloat16 convolutions do not "
                              "run on this CPU (TensorFlow's oneDNN needs AVX-512): use auto or "
                              "float32")
        return tf.bfloat16
    if cpu_flags is None:
        cpu_flags = set(cpuinfo().get("flags", "").split())
    native = not gpu and bool(cpu_flags & {"avx512_bf16", "amx_bf16"})
    return tf.bfloat16 if native and bfloat16_runs() else tf.float32


def bfloat16_runs() -> bool:
    """Whether a bfloat16 convolution runs here (TensorFlow's oneDNN kernels
    refuse it on a CPU without AVX-512, or under ONEDNN_MAX_CPU_ISA=AVX2)."""
    x = tf.ones((1, 4, 4, 2), tf.bfloat16)
    try:
        tf.nn.conv2d(x, tf.ones((3, 3, 2, 2), tf.bfloat16), 1, "SAME").numpy()
    except tf.errors.OpError:
        return False
    return True


class Network:
    """Fully convolutional network: ``nb_layers`` hidden k x k convolutions of
    ``nb_out_filter`` channels, then a k x k convolution to 2 Nz outputs.
    The weights are float32; the convolutions compute in ``dtype``
    (bfloat16 halves the cost where the hardware has it, with velocities
    about 1 % off float32's: mixed precision, the gradients reach the
    float32 weights through the casts)."""

    def __init__(self, nz: int, nb_layers: int, nb_out_filter: int, conv_ker_size: int,
                 activation: str, seed: int = 0, dtype: tf.DType = tf.float32) -> None:
        self.nz = nz
        self.dtype = dtype
        self.act = getattr(tf.nn, activation)
        rng = np.random.default_rng(seed)
        sizes = [NIN] + [nb_out_filter] * nb_layers + [2 * nz]
        self.weights: list[tf.Variable] = []
        for i, (a, b) in enumerate(itertools.pairwise(sizes)):
            std = np.sqrt(2.0 / (conv_ker_size**2 * a)) * (0.1 if i == len(sizes) - 2 else 1.0)
            w = rng.normal(0.0, std, (conv_ker_size, conv_ker_size, a, b)).astype("float32")
            self.weights.append(tf.Variable(w, name=f"w{i}"))
            self.weights.append(tf.Variable(np.zeros(b, "float32"), name=f"b{i}"))

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        """(B, ny, nx, 6) features -> (B, 2, Nz, ny, nx) velocities (m/yr)."""
        n = len(self.weights) // 2
        x = tf.cast(x, self.dtype)
        for i in range(n):
            x = (tf.nn.conv2d(x, tf.cast(self.weights[2 * i], self.dtype), 1, "SAME")
                 + tf.cast(self.weights[2 * i + 1], self.dtype))
            if i < n - 1:
                x = self.act(x)
        x = tf.transpose(tf.cast(x, tf.float32), (0, 3, 1, 2)) * VEL_SCALE
        shape = tf.shape(x)
        return tf.reshape(x, tf.stack([shape[0], 2, self.nz, shape[2], shape[3]]))

    def arrays(self) -> dict[str, np.ndarray]:
        """The weights as numpy arrays, by variable name."""
        return {v.name.split(":")[0]: v.numpy() for v in self.weights}

    def assign(self, arrays: dict[str, np.ndarray], source: str) -> None:
        """Load weights saved by :meth:`arrays`."""
        for v in self.weights:
            key = v.name.split(":")[0]
            if key not in arrays or arrays[key].shape != tuple(v.shape):
                raise DataError(f"{source}: weight '{key}' missing or of the wrong shape")
            v.assign(arrays[key])


def architecture(params) -> dict[str, object]:
    """The settings a weights file must match."""
    net = params.emulator.network
    return {"Nz": params.numerics.Nz, "vert_spacing": float(params.numerics.vert_spacing),
            "nb_layers": net.nb_layers, "nb_out_filter": net.nb_out_filter,
            "conv_ker_size": net.conv_ker_size, "activation": net.activation}


def save_weights(path: Path, net: Network, arch: dict[str, object]) -> None:
    """Write the network and its architecture to an .npz file."""
    meta = {f"arch_{k}": np.asarray(v) for k, v in arch.items()}
    with open(path, "wb") as f:
        np.savez(f, **net.arrays(), **meta)


def load_weights(path: Path, net: Network, arch: dict[str, object]) -> None:
    """Load an .npz written by :func:`save_weights`; ConfigError when its
    architecture differs from the parameters."""
    with np.load(path) as data:
        saved = {k[5:]: data[k].item() for k in data.files if k.startswith("arch_")}
        for key, value in arch.items():
            if saved.get(key) != value:
                raise ConfigError(
                    f"processes.iceflow: the emulator weights {path} were trained with "
                    f"{key}={saved.get(key)!r}, the configuration has {value!r}; set "
                    "emulator.pretrained: false (and emulator.nbit_init) or match it")
        net.assign({k: data[k] for k in data.files if not k.startswith("arch_")}, str(path))


def frames(n: int, size: int, margin: int) -> list[tuple[int, int, int, int]]:
    """Overlapping frames along one axis of ``n`` cells: (start, stop) of the
    frame fed to the network and (start, stop) of the part kept from it.
    The kept parts split the axis into the fewest equal pieces whose frames
    (the piece and ``margin`` cells each side) fit in ``size`` cells, so an
    axis a little longer than ``size`` costs two half frames, not two full
    ones."""
    if n <= size:
        return [(0, n, 0, n)]
    count = -(-n // max(size - 2 * margin, 1))
    cuts = [round(i * n / count) for i in range(count + 1)]
    return [(max(k0 - margin, 0), min(k1 + margin, n), k0, k1)
            for k0, k1 in itertools.pairwise(cuts)]


class Emulator:
    """The network with its online training (Adam on the energy)."""

    def __init__(self, params, consts: FlowConstants, zeta: tf.Tensor, slope: tf.Tensor,
                 run) -> None:
        e = params.emulator
        self.p = params
        self.consts, self.zeta, self.slope = consts, zeta, slope
        self.periodic = params.numerics.periodic
        net = e.network
        self.net = Network(params.numerics.Nz, net.nb_layers, net.nb_out_filter,
                           net.conv_ker_size, net.activation,
                           dtype=compute_dtype(net.precision))
        log.info("iceflow emulator: the network computes in %s", self.net.dtype.name)
        self.arch = architecture(params)
        # cells from which a node's prediction is influenced (the hidden and
        # output convolutions, and the centred slopes of the features), plus one
        self.margin = (net.nb_layers + 1) * (net.conv_ker_size // 2) + 2
        if e.pretrained:
            path = self._weights_path(run)
            load_weights(path, self.net, self.arch)
            log.info("iceflow emulator: loaded %s", path)
        self.m1 = [tf.Variable(tf.zeros_like(w)) for w in self.net.weights]
        self.m2 = [tf.Variable(tf.zeros_like(w)) for w in self.net.weights]
        self.nstep = tf.Variable(0.0)
        self.warmup = tf.constant(float(max(e.warmup, 1)))
        self.rng = np.random.default_rng(0)
        self.window = IceWindow(self.margin, consts.thr_ice_thk, KEY)  # the ice and the reach
        self._energy_and_grad = make_objective(consts, zeta, slope, self.periodic,
                                               params.numerics.jit).fg
        self._train = tf.function(self._train_step, reduce_retracing=True, autograph=False)
        self._predict = tf.function(lambda x: self.net(x), reduce_retracing=True,
                                    autograph=False)
        # one call instead of some forty eager ops (3-4 ms a step at 50 m)
        self._features = tf.function(
            lambda thk, usurf, A, C, dx: features(thk, usurf, A, C, dx, slope, self.periodic),
            reduce_retracing=True, autograph=False)

    def _weights_path(self, run) -> Path:
        name = self.p.emulator.weights
        if not name:
            return Path(str(resources.files("igm_plugins.processes.iceflow") / SHIPPED))
        found = run.find_file(name) if run is not None else None
        if found is None and Path(name).is_file():
            found = Path(name)
        if found is None:
            raise ConfigError(f"processes.iceflow.emulator.weights: file {name!r} not found")
        return found

    def _train_step(self, thk, usurf, A, C, dx, lr, weight, target=None, fit=None):
        # the network in TensorFlow's own kernels (oneDNN convolutions), the
        # energy and dJ/dX in XLA (fused: 3-4x faster on the CPU); the chain
        # rule joins them through output_gradients
        x = features(thk, usurf, A, C, dx, self.slope, self.periodic)[None]
        with tf.GradientTape() as tape:
            X = self.net(x)[0]
        J, dJdX = self._energy_and_grad(X, thk, usurf, A, C, dx)
        dLdX = weight * dJdX
        if target is not None:  # pretraining: plus fit * |X - target|^2 / |target|^2 on the ice
            ice = tf.cast(thk > self.consts.thr_ice_thk, tf.float32)
            norm = tf.reduce_sum(ice * tf.square(target)) + 1.0
            dLdX += 2.0 * fit * ice * (X - target) / norm
        grads = tape.gradient(X, self.net.weights, output_gradients=dLdX)
        self.nstep.assign_add(1.0)
        # linear warm-up from the first iteration: full-size Adam steps from a
        # fresh state overshoot (the error first grows for tens of iterations)
        lr = lr * tf.minimum(1.0, self.nstep / self.warmup)
        b1, b2 = 0.9, 0.999
        for w, g, m1, m2 in zip(self.net.weights, grads, self.m1, self.m2, strict=True):
            m1.assign(b1 * m1 + (1 - b1) * g)
            m2.assign(b2 * m2 + (1 - b2) * g * g)
            mh = m1 / (1 - b1**self.nstep)
            vh = m2 / (1 - b2**self.nstep)
            w.assign_sub(lr * mh / (tf.sqrt(vh) + 1e-7))
        return J

    def train(self, args: tuple, nbit: int, lr: float | None = None,
              weight: float = 1.0, target: tf.Tensor | None = None,
              fit: float = 0.0) -> float:
        """``nbit`` Adam iterations on the energy of the geometry ``args``
        = (thk, usurf, A, C, dx), each on a random frame when the grid is
        larger than ``train_framesizemax`` (or ``framesizemax``); the loss
        is ``weight`` times the energy (weights balance geometries of
        different energy scales in pretraining), plus, given a ``target``
        field (2, Nz, ny, nx) m/yr such as a converged solve, ``fit`` times
        its relative squared misfit over the ice; returns the last energy."""
        thk, usurf, A, C, dx = args
        ny, nx = thk.shape
        fs = min(self.p.emulator.framesizemax, self.p.emulator.train_framesizemax)
        lr = tf.constant(self.p.emulator.lr if lr is None else lr, tf.float32)
        weight = tf.constant(weight, tf.float32)
        supervised = {} if target is None else {"fit": tf.constant(fit, tf.float32)}
        J = float("nan")
        for _ in range(nbit):
            j0 = int(self.rng.integers(0, ny - fs + 1)) if ny > fs else 0
            i0 = int(self.rng.integers(0, nx - fs + 1)) if nx > fs else 0
            sl = (slice(j0, j0 + min(fs, ny)), slice(i0, i0 + min(fs, nx)))
            Af = A[sl] if A.shape.rank == 2 else A[(slice(None), *sl)]
            if target is not None:
                supervised["target"] = target[(slice(None), slice(None), *sl)]
            J = self._train(thk[sl], usurf[sl], Af, C[sl], dx, lr, weight, **supervised)
        return float(J)

    def energy(self, args: tuple, X: tf.Tensor | None = None) -> float:
        """Energy (MPa m/yr per ice node) of the field ``X`` (2, Nz, ny, nx),
        by default the network's, on the geometry ``args``."""
        X = self.predict(args) if X is None else X
        return float(self._energy_and_grad(X, *args)[0])

    def predict(self, args: tuple) -> tf.Tensor:
        """Velocities (2, Nz, ny, nx) m/yr for the geometry ``args``."""
        thk = args[0]
        x = self._features(*args)
        ny, nx = thk.shape
        fs = self.p.emulator.framesizemax
        if ny <= fs and nx <= fs:
            return self._predict(x[None])[0]
        rows = []
        for a, b, k0, k1 in frames(ny, fs, self.margin):
            cols = []
            for c, d, l0, l1 in frames(nx, fs, self.margin):
                out = self._predict(x[None, a:b, c:d])[0]
                cols.append(out[:, :, k0 - a:k1 - a, l0 - c:l1 - c])
            rows.append(tf.concat(cols, axis=-1))
        return tf.concat(rows, axis=-2)

    def step(self, args: tuple, it: int, initial: bool, retrain: bool = True) -> tf.Tensor:
        """Train when due (``nbit_init`` at the start; ``nbit`` every
        ``retrain_freq`` steps with ``retrain``, false when solves correct
        the network), then
        predict: both on the window around the ice (the whole grid on a
        periodic one), zero elsewhere."""
        e = self.p.emulator
        window = None  # a periodic grid: the whole of it
        if not self.periodic:
            window = self.window.follow(args[0])
            if window is None:  # no ice
                return tf.zeros((2, self.net.nz, *args[0].shape), tf.float32)
        if initial and e.nbit_init > 0:
            log.info("iceflow emulator: initial training, energy %.6g",
                     self.train(self._crop(args, window), e.nbit_init))
        elif (retrain and not initial and e.retrain_freq > 0
              and it % e.retrain_freq == 0 and e.nbit > 0):
            self.train(self._crop(args, window), e.nbit)
        return self._field(args, window)

    @staticmethod
    def _crop(args: tuple, window: tuple[slice, slice] | None) -> tuple:
        return args if window is None else crop(args, window)

    def _field(self, args: tuple, window: tuple[slice, slice] | None) -> tf.Tensor:
        """The network's velocities (2, Nz, ny, nx) on ``window``, zero
        outside it."""
        X = self.predict(self._crop(args, window))
        return X if window is None else uncrop(X, window, args[0].shape)

    def state_dict(self) -> dict[str, object]:
        """What a checkpoint keeps: the weights, Adam's moments and step
        count, the random generator of the training frames and the window."""
        return {"weights": self.net.arrays(), "adam_m1": [m.numpy() for m in self.m1],
                "adam_m2": [m.numpy() for m in self.m2], "nstep": self.nstep.numpy(),
                "rng": self.rng, "window": self.window.state_dict()}

    def load_state_dict(self, saved: dict) -> None:
        """Restore :meth:`state_dict`; DataError when the network differs."""
        self.net.assign(saved["weights"], "the checkpoint's emulator")
        for name in ("adam_m1", "adam_m2"):
            arrays = saved[name]
            if len(arrays) != len(self.net.weights):
                raise DataError(f"the checkpoint's emulator has {len(arrays)} optimiser "
                                f"moments, the network {len(self.net.weights)} weights")
            for variable, array in zip(getattr(self, name[5:]), arrays, strict=True):
                variable.assign(array)
        self.nstep.assign(saved["nstep"])
        self.rng = saved["rng"]
        self.window.load_state_dict(saved["window"])

    def save(self, path: Path) -> None:
        """Write the (retrained) network to ``path`` atomically."""
        from igm_core.files import atomic_path

        with atomic_path(path) as tmp:
            save_weights(Path(tmp), self.net, self.arch)
