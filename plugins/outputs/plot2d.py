"""Output ``plot2d``: a map of one field at every save time.

One PNG per save time (``plot2d/<var>_<year>.png`` in the run folder) of
``var`` over the ice (``thk > 0``; bed and surface fields everywhere) on the
hillshaded bed, in real coordinates (km), with the glacier outline at the
start (dashed) and now (solid), a colour bar fitted to the field (``scale``:
logarithmic for speeds, linear otherwise, up to ``var_max`` or, when it is
null, the 99th percentile over the ice of the first frame, kept for every
frame so that they compare), the field, units and year in the title, and the
particles as dots when a process provides them. At the
end the frames become an animation (``animation: gif`` or ``mp4``, which
needs ffmpeg and falls back to GIF). ``live: true`` also updates a window
during the run; without a display it warns once and goes on without it.
A run continued from a checkpoint keeps the frames up to the checkpoint
(copied from the checkpoint's run folder when it is another), so its
animation covers the whole run.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from igm_core import Choice, hookimpl
from igm_core.errors import ConfigError
from igm_core.files import atomic_path

log = logging.getLogger("igm")

KEY = "outputs.plot2d"
EVERYWHERE = ("topg", "usurf")  # fields drawn outside the ice too
NON_INTERACTIVE = ("agg", "pdf", "ps", "svg", "pgf", "cairo", "template")


class Scale(Choice):
    auto = "auto"  # log for speeds (a non-negative field in m yr-1), else linear
    linear = "linear"
    log = "log"


class Animation(Choice):
    gif = "gif"
    mp4 = "mp4"  # needs ffmpeg (a GIF otherwise)
    none = "none"


@dataclass
class Params:
    var: str = "velbar_mag"  # field to draw
    var_max: float | None = None  # top of the colour scale (units of var); null: fitted
    scale: Scale = Scale.auto  # auto (log for speeds), linear or log
    live: bool = False  # also show the map in a window during the run
    animation: Animation = Animation.gif  # gif, mp4 (needs ffmpeg) or none
    folder: str = "plot2d"  # sub-folder of the run folder for the frames
    cmap: str = "viridis"  # matplotlib colour map
    dpi: int = 100  # resolution of the PNG frames

    def __post_init__(self) -> None:
        if self.var_max is not None and not self.var_max > 0:
            raise ConfigError(f"{KEY}.var_max must be positive or null (fitted), got "
                              f"{self.var_max}")
        if not self.dpi > 0:
            raise ConfigError(f"{KEY}.dpi must be positive, got {self.dpi}")


@dataclass
class Plotter:
    """What one run's plot output keeps between saves (its memory):
    ``restart_dir`` is the run folder of the checkpoint it continues from."""

    folder: Path
    outline0: np.ndarray  # the ice mask at the start of the run (ny, nx), 0 or 1
    frames: list[Path] = field(default_factory=list)
    live: Any = None  # the pyplot figure of the live window, if any
    restart_dir: Path | None = None
    limits: tuple[float, float] | None = None  # colour scale, fixed at the first frame

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps: the frame file names, in order, the
        starting outline and the colour scale."""
        return {"frames": [p.name for p in self.frames], "outline0": self.outline0,
                "limits": list(self.limits) if self.limits else []}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        """Keep the checkpoint's frames (copied from its run folder when it is
        another); frames drawn after the checkpoint are removed."""
        names = list(saved["frames"])
        self.outline0 = np.asarray(saved["outline0"])
        self.limits = tuple(saved["limits"]) if len(saved["limits"]) else None
        source = (self.restart_dir / self.folder.name if self.restart_dir is not None
                  else self.folder)
        for stale in set(self.folder.glob("*.png")) - {self.folder / n for n in names}:
            stale.unlink()
        for name in names:
            if source != self.folder and (source / name).is_file():
                with atomic_path(self.folder / name) as tmp:
                    shutil.copyfile(source / name, tmp)
        self.frames = [self.folder / n for n in names if (self.folder / n).is_file()]


def is_log(params: Params, values: np.ndarray, units: str) -> bool:
    """Whether ``values`` get a logarithmic colour scale."""
    if params.scale is not Scale.auto:
        return params.scale is Scale.log
    finite = values[np.isfinite(values)]
    return units == "m yr-1" and finite.size > 0 and finite.min() >= 0


def colour_limits(params: Params, values: np.ndarray, log_scale: bool) -> tuple[float, float]:
    """(low, high) of the colour scale: ``var_max`` or the 99th percentile
    of the finite values; for a log scale low is high / 1000 (at least 0.1
    of the units), else 0 or the minimum when negative."""
    finite = values[np.isfinite(values)]
    high = params.var_max or (float(np.percentile(finite, 99)) if finite.size else 1.0)
    if log_scale:
        return max(high / 1000.0, 0.1 if high > 1.0 else high / 1000.0), high
    low = min(0.0, float(finite.min())) if finite.size else 0.0
    return low, high if high > low else low + 1.0


def draw(fig: Any, params: Params, state, memory: Plotter) -> None:
    """Draw ``params.var`` at ``state.t`` on the matplotlib figure ``fig``:
    hillshaded bed, the field over the ice, outlines, particles."""
    from matplotlib.colors import LightSource, LogNorm, Normalize

    fig.clear()
    ax = fig.add_subplot()
    km = 1e-3
    dx = state.dx * km
    extent = (state.x[0] * km - dx / 2, state.x[-1] * km + dx / 2,
              state.y[0] * km - dx / 2, state.y[-1] * km + dx / 2)
    if state.has("topg"):
        shade = LightSource(azdeg=315, altdeg=45).hillshade(
            np.asarray(state.topg, dtype="float64"), dx=state.dx, dy=state.dx)
        ax.imshow(shade, origin="lower", extent=extent, cmap="Greys_r", vmin=0, vmax=1,
                  interpolation="nearest")
    values = np.asarray(state.get(params.var), dtype="float64")
    ice = np.asarray(state.thk) > 0 if state.has("thk") else None
    if params.var not in EVERYWHERE and ice is not None:
        values = np.where(ice, values, np.nan)
    meta = state.meta(params.var)
    log_scale = is_log(params, values, meta.units)
    if memory.limits is None:
        memory.limits = colour_limits(params, values, log_scale)
    low, high = memory.limits
    if log_scale:
        values = np.where(values > 0, values, np.nan)
    norm = LogNorm(low, high, clip=True) if log_scale else Normalize(low, high, clip=True)
    image = ax.imshow(values, origin="lower", extent=extent, cmap=params.cmap, norm=norm,
                      interpolation="nearest")
    fig.colorbar(image, ax=ax, label=f"{params.var} ({meta.units})", extend="max")
    xs, ys = state.x * km, state.y * km
    if memory.outline0.any():
        ax.contour(xs, ys, memory.outline0, levels=[0.5], colors="k", linewidths=0.8,
                   linestyles="dashed")
    if ice is not None and ice.any():
        ax.contour(xs, ys, ice.astype("float64"), levels=[0.5], colors="k", linewidths=1.0)
    particles = state.get("particles")
    if particles and len(particles.get("x", ())) > 0:
        ax.scatter(np.asarray(particles["x"]) * km, np.asarray(particles["y"]) * km, s=1.5,
                   c="k", linewidths=0)
    ax.set_xlabel("x (km)")
    ax.set_ylabel("y (km)")
    ax.set_title(f"{meta.long_name} ({meta.units})\nyear {float(state.t):g}; outline: now "
                 "(solid), at the start (dashed)", fontsize=10)
    ax.set_aspect("equal")


def open_live_window() -> Any:
    """A pyplot figure in an interactive window, or None (with one warning)
    when matplotlib has no interactive backend (no display)."""
    import matplotlib.pyplot as plt

    if plt.get_backend().lower() in NON_INTERACTIVE:
        log.warning("%s.live: no display (matplotlib backend '%s'); maps are saved as PNG "
                    "files only", KEY, plt.get_backend())
        return None
    plt.ion()
    return plt.figure(figsize=(8, 6))


def save_frame(params: Params, state, memory: Plotter) -> Path:
    """Render one PNG (atomically) into the plot folder; return its path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 6))
    FigureCanvasAgg(fig)
    draw(fig, params, state, memory)
    path = memory.folder / f"{params.var}_{float(state.t):g}.png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=params.dpi)
    return path


def make_animation(frames: list[Path], path: Path, kind: str) -> Path:
    """Assemble PNG frames into ``path`` with suffix .gif or .mp4 (ffmpeg;
    GIF when ffmpeg is missing); returns the file written."""
    from PIL import Image

    if kind == "mp4":
        from matplotlib import animation

        if animation.writers.is_available("ffmpeg"):
            return _mp4(frames, path.with_suffix(".mp4"))
        log.warning("%s.animation: ffmpeg not found, writing a GIF instead", KEY)
    images = [Image.open(p).convert("RGB") for p in frames]
    target = path.with_suffix(".gif")
    with atomic_path(target) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                       duration=500, loop=0)
    return target


def _mp4(frames: list[Path], target: Path) -> Path:
    import matplotlib.image as mpimg
    from matplotlib import animation
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    first = mpimg.imread(frames[0])
    fig = Figure(figsize=(first.shape[1] / 100, first.shape[0] / 100), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.axis("off")
    image = ax.imshow(first)
    writer = animation.FFMpegWriter(fps=2)
    with atomic_path(target) as tmp:
        with writer.saving(fig, str(tmp), dpi=100):
            for frame in frames:
                image.set_data(mpimg.imread(frame))
                writer.grab_frame()
    return target


@hookimpl
def igm_output_initialize(params: Params, state, run) -> Plotter:
    if not state.has(params.var):
        shape = state.grid.shape
        fields = sorted(n for n, v in state.fields.items() if np.shape(v) == shape)
        raise ConfigError(f"{KEY}.var: no 2-D field '{params.var}' in this run; available: "
                          f"{', '.join(fields)}")
    ice = (np.asarray(state.thk) > 0 if state.has("thk")
           else np.zeros(state.grid.shape, bool)).astype("uint8")
    plotter = Plotter(folder=Path(run.output_dir) / params.folder, outline0=ice,
                      restart_dir=run.restart_dir)
    if params.live:
        plotter.live = open_live_window()
    return plotter


@hookimpl
def igm_output_update(params: Params, state, memory: Plotter) -> None:
    if not state.saveresult:
        return
    memory.frames.append(save_frame(params, state, memory))
    if memory.live is not None:
        import matplotlib.pyplot as plt

        draw(memory.live, params, state, memory)
        plt.pause(0.001)


@hookimpl
def igm_output_finalize(params: Params, memory: Plotter) -> None:
    if params.animation != "none" and memory.frames:
        path = make_animation(memory.frames, memory.folder / params.var, params.animation)
        log.info("%s: %d frames and the animation %s", KEY, len(memory.frames), path)
