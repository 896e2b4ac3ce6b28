"""A synthetic glaciated mountain range, any size, for the scaling benchmark.

Usage: ``python bench/synthetic_range.py N OUT.nc [--dx 100] [--seed 0]``

The bed is a ridge-and-valley landscape: a fractal (Brownian, power
spectrum k^-4 of the elevation, so slopes have no preferred scale)
surface of wavelengths from 1.5 km to 12 km (the valley spacing), plus a
crest line along the middle of the domain. It is scaled so that the mean
bed slope is 0.30, a typical Alpine value, whatever the grid size, with a
relief of about 2 km. The initial ice (``thk``) lies where the bed is
above the equilibrium line, 0.35 m of ice per m above it, at most 250 m,
smoothed over 500 m, then thinned wherever its driving stress
rho g H |grad s| would exceed a yield stress of 100 kPa (the perfectly
plastic bound, Nye 1952; Cuffey and Paterson 2010, section 8.2, give
50-150 kPa for valley glaciers): steep slopes carry thin ice, valleys
thick ice, and the first velocities are those of real mountain glaciers.
The equilibrium line :func:`ela` is the bed's 70th percentile, so about a
third of the land starts above it at every size: the cost per cell is
comparable from 100 x 100 to 2000 x 2000 cells.

Fields (float32, m): ``topg``, ``thk``, ``usurf``, on coordinates ``x``,
``y`` (m, cell centres, UTM-like offsets); global attribute ``ela_m``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

MEAN_SLOPE = 0.30  # mean |grad b| of the bed
ELA_PERCENTILE = 70.0  # the equilibrium line: this percentile of the bed
MIN_WAVELENGTH_M = 1500.0
MAX_WAVELENGTH_M = 12000.0
YIELD_STRESS_PA = 1.0e5  # the plastic bound on the driving stress
ICE_DENSITY = 910.0  # kg m-3, as iceflow's
GRAVITY = 9.81  # m s-2


def bed(n: int, dx: float, seed: int = 0) -> np.ndarray:
    """Bed elevation (n, n) m: the fractal landscape and the crest line,
    scaled to :data:`MEAN_SLOPE`, lowest point 1000 m."""
    rng = np.random.default_rng(seed)
    k = np.fft.fftfreq(n, d=dx)  # cycles per m
    kx, ky = np.meshgrid(k, k)
    kk = np.hypot(kx, ky)
    band = (kk >= 1.0 / MAX_WAVELENGTH_M) & (kk <= 1.0 / MIN_WAVELENGTH_M)
    amplitude = np.where(band, np.maximum(kk, 1e-12) ** -2.0, 0.0)
    phase = np.exp(2j * np.pi * rng.random((n, n)))
    z = np.real(np.fft.ifft2(amplitude * phase))
    y = (np.arange(n) - (n - 1) / 2.0) * dx
    width = max(n * dx / 3.0, 5000.0)
    z = z / np.std(z) + 1.5 * np.exp(-((y / width) ** 2))[:, None]
    gy, gx = np.gradient(z, dx)
    z *= MEAN_SLOPE / np.mean(np.hypot(gx, gy))
    return (z - z.min() + 1000.0).astype("float32")


def ela(topg: np.ndarray) -> float:
    """The equilibrium-line altitude (m) of the range: the bed's 70th percentile."""
    return float(np.percentile(topg, ELA_PERCENTILE))


def driving_stress(topg: np.ndarray, thk: np.ndarray, dx: float) -> np.ndarray:
    """rho g H |grad s| (Pa), the surface slope by centred differences."""
    gy, gx = np.gradient(topg.astype("float64") + thk, dx)
    return ICE_DENSITY * GRAVITY * thk * np.hypot(gx, gy)


def initial_ice(topg: np.ndarray, dx: float) -> np.ndarray:
    """Initial thickness (m): 0.35 m per m of bed above :func:`ela`, at most
    250 m, smoothed by a 500 m box filter (edges mirrored), then thinned
    until its :func:`driving_stress` is nowhere above
    :data:`YIELD_STRESS_PA` (each pass thins the cells above it to 99 % of
    tau_y / (rho g |grad s|); thinning one cell steepens its neighbours'
    surface, so it repeats)."""
    thk = np.clip(0.35 * (topg - ela(topg)), 0.0, 250.0)
    r = max(round(500.0 / dx / 2.0), 1)
    padded = np.pad(thk, r, mode="reflect")
    kernel = np.ones(2 * r + 1) / (2 * r + 1)
    for axis in (0, 1):
        padded = np.apply_along_axis(np.convolve, axis, padded, kernel, mode="same")
    thk = np.where(topg > ela(topg) - 100.0, padded[r:-r, r:-r], 0.0)
    while (stress := driving_stress(topg, thk, dx)).max() > YIELD_STRESS_PA:
        thk = thk * np.minimum(1.0, 0.99 * YIELD_STRESS_PA / np.maximum(stress, 1.0))
    return thk.astype("float32")


def write_range(path: Path, n: int, dx: float = 100.0, seed: int = 0) -> float:
    """Write the n x n range to ``path`` (netCDF); return its ELA (m)."""
    import netCDF4

    topg = bed(n, dx, seed)
    thk = initial_ice(topg, dx)
    x = 600000.0 + dx * np.arange(n)
    y = 5000000.0 + dx * np.arange(n)
    path.parent.mkdir(parents=True, exist_ok=True)
    with netCDF4.Dataset(path, "w") as ds:
        ds.title = f"synthetic mountain range, {n} x {n} cells of {dx:g} m, seed {seed}"
        ds.ela_m = ela(topg)
        for name, values in (("x", x), ("y", y)):
            ds.createDimension(name, n)
            var = ds.createVariable(name, "f8", (name,))
            var[:] = values
            var.units = "m"
        for name, values in (("topg", topg), ("thk", thk), ("usurf", topg + thk)):
            var = ds.createVariable(name, "f4", ("y", "x"))
            var[:] = values
            var.units = "m"
    return ela(topg)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", type=int, help="cells along each side")
    parser.add_argument("out", type=Path, help="netCDF file to write")
    parser.add_argument("--dx", type=float, default=100.0, help="cell size (m)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"{args.out}: ELA {write_range(args.out, args.n, args.dx, args.seed):.0f} m")


if __name__ == "__main__":
    main()
