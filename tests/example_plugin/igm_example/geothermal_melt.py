"""Process ``geothermal_melt``: basal melting by the geothermal heat flux.

All the heat flux G (W m-2) reaching a temperate bed melts ice at the rate
m = G * s_per_yr / (rho_i * L) (m of ice per year), about 7 mm/yr for
G = 65 mW m-2 (e.g. Cuffey and Paterson 2010, ch. 9). Thickness never
goes below zero; the surface follows the bed plus thickness.
"""

from __future__ import annotations

from dataclasses import dataclass

from igm_core import Field, hookimpl

SECONDS_PER_YEAR = 31556926.0

requires = ("thk", "topg")
provides = (Field("basal_melt", "m a-1", "basal melt rate from the geothermal heat flux"),
            "thk", "usurf")


@dataclass
class Params:
    heat_flux: float = 0.065  # geothermal heat flux G (W m-2)
    latent_heat: float = 3.34e5  # latent heat of fusion of ice L (J kg-1)
    ice_density: float = 910.0  # rho_i (kg m-3)


def melt_rate(params: Params) -> float:
    """Basal melt rate (m ice per year)."""
    return params.heat_flux * SECONDS_PER_YEAR / (params.ice_density * params.latent_heat)


@hookimpl
def igm_process_initialize(params: Params, state) -> None:
    import tensorflow as tf

    state.basal_melt = tf.where(state.thk > 0, melt_rate(params), 0.0)


@hookimpl
def igm_process_update(params: Params, state) -> None:
    import tensorflow as tf

    state.basal_melt = tf.where(state.thk > 0, melt_rate(params), 0.0)
    state.thk = tf.maximum(state.thk - state.dt * state.basal_melt, 0.0)
    state.usurf = state.topg + state.thk
