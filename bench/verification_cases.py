"""Geometries of two ice-flow verification cases, shared by the model
comparison (``bench/igm_flow_cases.py``, run with IGM 3.2.1's Python), the
documentation's figures (``docs/scripts/verification_plots.py``) and the
tests. Pure NumPy: no TensorFlow, no igm import.

- ISMIP-HOM experiment E (Pattyn et al. 2008, The Cryosphere 2, 95-108): the
  central flowline of Haut Glacier d'Arolla, 5 km long, from
  ``verification/ismip-hom/arolla100.dat`` in the shared data; E000 has no
  slip at the bed, E001 a free-slip zone from x = 2200 to 2500 m. The
  participants' surface velocities are in ``raw-e/``.
- A uniform slab on a steep bed: 200 m thick on a 5 degree slope, no slip.

Lengths in m, velocities in m yr-1, A in MPa-3 yr-1.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared"
ISMIP_HOM = SHARED / "verification" / "ismip-hom"
E_LENGTH = 5000.0  # m, the flowline's length L (x_hat = x / L)
E_ARRHENIUS = 100.0  # MPa-3 yr-1 = 1e-16 Pa-3 a-1 (ISMIP-HOM)
# Pattyn et al. (2008), Table 2: full Stokes and first-order (Blatter-Pattyn,
# "LMLa") participants of experiment E
E_GROUPS = {"fs": ("aas1", "cma1", "jvj1", "mmr1", "oga1", "spr1", "ssu1", "yko1"),
            "bp": ("ahu1", "bds1", "fpa1", "mbr1", "tpa1")}
SLAB = {"thk": 200.0, "slope_deg": 5.0, "arrhenius": 78.0}


def arolla(dx: float, ny: int = 3) -> dict[str, np.ndarray]:
    """The experiment E flowline on an ``(ny, nx)`` grid of ``dx`` m cells
    (nodes at x = 0, dx, ..., 5000 m, the data interpolated linearly),
    uniform across the flow: ``x`` (nx,), ``topg``, ``thk`` (ny, nx, m) and
    ``free_slip`` (ny, nx: 1 in E001's free-slip zone, 2200 <= x < 2500 m,
    whose nodes then span the zone's 300 m)."""
    data = np.loadtxt(ISMIP_HOM / "arolla100.dat")
    x = np.arange(0.0, E_LENGTH + dx / 2, dx)
    bed = np.interp(x, data[:, 0], data[:, 1])
    surface = np.interp(x, data[:, 0], data[:, 2])
    zone = (x >= 2200.0 - 1e-6) & (x < 2500.0 - 1e-6)
    row = np.ones((ny, 1))
    return {"x": x, "topg": row * bed, "thk": row * (surface - bed),
            "free_slip": row * zone.astype(float)}


def steep_slab(dx: float, nx: int, ny: int = 3) -> dict[str, np.ndarray]:
    """The slab on a finite domain sloping down in x: ``x`` (nx,), ``topg``
    and ``thk`` (ny, nx, m). Far (tens of thicknesses) from its two ends
    the flow is the infinite slab's."""
    x = dx * np.arange(nx)
    row = np.ones((ny, 1))
    slope = math.tan(math.radians(SLAB["slope_deg"]))
    return {"x": x, "topg": row * (-slope * x), "thk": row * np.full(nx, SLAB["thk"])}


def slab_velocity(zeta: np.ndarray, thk: float, slope: float, arrhenius: float,
                  slidingco: float | None = None, first_order: bool = True) -> np.ndarray:
    """Exact velocity (m yr-1) at relative heights ``zeta`` of an infinite
    slab ``thk`` m thick on a surface slope ``slope`` (tan of the angle),
    Glen's n = 3, rho = 910 kg m-3, g = 9.81 m s-2; Weertman sliding
    C u_b^(1/3) = rho g H a with ``slidingco`` C (MPa yr^1/3 m^-1/3), none
    when None.

    The shallow-ice profile is u_b + A/2 (rho g a)^3 (H^4 - (H (1 - zeta))^4).
    The first-order (Blatter-Pattyn) equations keep the longitudinal strain
    rate that a sloping column has at constant height, du/dx = a du/dz:
    the effective strain rate is k du/dz / 2 and the stress balance
    k^2 d(eta du/dz)/dz = -rho g a with k^2 = 1 + 4 a^2, so their
    deformation velocity is the shallow-ice one divided by k^(n+1) =
    (1 + 4 a^2)^2 (``first_order``): 6 % less on a 5 degree slope. The
    sliding speed is the same in both."""
    rho_g = 910.0 * 9.81e-6  # MPa m-1
    base = (rho_g * thk * slope / slidingco) ** 3 if slidingco else 0.0
    shear = 0.5 * arrhenius * (rho_g * slope) ** 3 * (thk**4 - (thk * (1.0 - zeta)) ** 4)
    return base + shear / ((1.0 + 4.0 * slope**2) ** 2 if first_order else 1.0)


def ismip_e_results(exp: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each participant's surface v_x along the flowline for experiment
    ``exp`` ("000" or "001"): {model: (x_hat, vx)}, sorted, NaN rows and
    repeated points dropped, x in metres converted to x_hat."""
    out = {}
    for path in sorted((ISMIP_HOM / "raw-e").glob(f"*/*e{exp}*.txt")):
        if path.stem.endswith("_base"):
            continue
        table = np.genfromtxt(path)
        table = table[np.isfinite(table[:, 1])]
        x_hat = table[:, 0] / (E_LENGTH if table[:, 0].max() > 1.5 else 1.0)
        x_hat, first = np.unique(x_hat, return_index=True)
        out[path.stem[:4].lower()] = (x_hat, table[first, 1])
    return out


def ismip_e_envelope(exp: str, x_hat: np.ndarray) -> dict[str, np.ndarray]:
    """Per group ("fs", "bp") the mean, min and max of the participants'
    surface v_x interpolated at ``x_hat``: keys like ``fs_mean``, ``bp_min``."""
    results = ismip_e_results(exp)
    out = {}
    for group, models in E_GROUPS.items():
        lines = np.array([np.interp(x_hat, *results[m]) for m in models if m in results])
        out.update({f"{group}_mean": lines.mean(0), f"{group}_min": lines.min(0),
                    f"{group}_max": lines.max(0)})
    return out
