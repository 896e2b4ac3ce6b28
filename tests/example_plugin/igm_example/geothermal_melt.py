"""Process ``geothermal_melt``: basal melting by the geothermal heat flux.

All the heat flux G (W m-2) reaching a temperate bed melts ice at the rate
m = G * s_per_yr / (rho_i * L) (m of ice per year), about 7 mm/yr for
G = 65 mW m-2 (e.g. Cuffey and Paterson 2010, ch. 9).

The process does not write the thickness: ``thk`` does, and budgets every
change. It hands ``thk`` the basal mass balance ``bmb = -m`` under the ice,
a field declared as a rate of ``thk``, which ``thk`` adds (keeping the
thickness >= 0) and counts in its ``sources`` budget term.

The process keeps the volume it asked to melt since the start (its memory,
a dataclass the kernel writes into checkpoints) and logs it at the end.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from igm_core import Field, hookimpl

log = logging.getLogger("igm")
SECONDS_PER_YEAR = 31556926.0

requires = ("thk",)
provides = (Field("bmb", "m yr-1", "basal mass balance from the geothermal heat flux (ice "
                  "equivalent, negative for melt)", rate_of="thk"),)


@dataclass
class Params:
    heat_flux: float = 0.065  # geothermal heat flux G (W m-2)
    latent_heat: float = 3.34e5  # latent heat of fusion of ice L (J kg-1)
    ice_density: float = 910.0  # rho_i (kg m-3)


@dataclass
class Melted:
    """What the process keeps between steps: the ice volume it asked to melt
    so far (m3, float64)."""

    volume_m3: float = 0.0


def melt_rate(params: Params) -> float:
    """Basal melt rate (m ice per year)."""
    return params.heat_flux * SECONDS_PER_YEAR / (params.ice_density * params.latent_heat)


@hookimpl
def igm_process_initialize(params: Params, state) -> Melted:
    import tensorflow as tf

    state.bmb = tf.where(state.thk > 0, -melt_rate(params), 0.0)
    return Melted()


@hookimpl
def igm_process_update(params: Params, state, memory: Melted) -> None:
    import tensorflow as tf

    state.bmb = tf.where(state.thk > 0, -melt_rate(params), 0.0)
    memory.volume_m3 -= state.dt * float(np.sum(np.asarray(state.bmb, "float64"))) * state.dx**2


@hookimpl
def igm_process_finalize(memory: Melted) -> None:
    log.info("geothermal_melt: %.6g km3 of ice to melt at the bed handed to thk",
             memory.volume_m3 / 1e9)
