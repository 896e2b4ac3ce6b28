"""The column preconditioner of the `solved` method.

Most of the stiffness of the Blatter-Pattyn energy is vertical shear: a
layer of relative thickness dz in ice H m thick resists shear with a weight
of about eta / (H dz) (eta its effective viscosity), which exceeds the
horizontal stresses' eta H dz / dx^2 by (dx / (H dz))^2, up to 10^3 on thin
layers at 100 m; the weights also span orders of magnitude from thick slow
ice to thin fast margins. That ill-conditioning is what stalls a plain
gradient method (the shallow-ice operator, column by column).

Written in layer increments, ``X[k] = X[0] + sum of the increments of the
layers below k``, the vertical-shear operator of a column is diagonal: one
weight per layer, plus the friction's curvature for the basal velocity. The
solver minimises over the increments divided by the square root of their
weight (Picard linearisation at the current velocity: the viscosity and the
friction's secant at its strain rates and basal speed), so that the
vertical operator is the identity and what remains for L-BFGS is the far
better conditioned horizontal coupling. The weights of every layer and of
the base also carry that horizontal stiffness (about eta H dz / dx^2), so
that plug flow is scaled too.

The same metric measures convergence: the gradient's norm in it
approximates the energy norm of the distance to the minimum (the gradient
in the inverse of the linearised operator), relative to its value at zero
velocity (the driving stress).
"""

from __future__ import annotations

import tensorflow as tf

from igm_plugins.processes.iceflow._physics import (
    FlowConstants,
    _avg4,
    column_strain,
    held_velocities,
)

VERTICAL = 1.0 / 18.0
"""Vertical stiffness of a layer per (viscous weight / (H dz)^2): the
second derivative of eff2 = ... + 1/4 (du/dz)^2 in one node's increment,
2 x 1/4 x 1/9 (1/9: the mean over the 2x2 Gauss points of the squared
bilinear weight of a corner)."""

HORIZONTAL = 5.0 / 24.0
"""Horizontal stiffness per (viscous weight / dx^2): 2 (a_xx^2 + a_xy^2),
a_xx^2 = 1/4 x 1/3 (du/dx of the layer-mean velocity, mean squared
weight 1/3 over the Gauss points), a_xy^2 a quarter of it."""


def _cells_to_nodes(f: tf.Tensor, periodic: bool) -> tf.Tensor:
    """Node weights: the sum of the values of the (up to four) cells around
    each node, from cells (..., ny-1, nx-1; ny, nx on a periodic grid)."""
    if periodic:
        rolled = f + tf.roll(f, 1, axis=-1)
        return rolled + tf.roll(rolled, 1, axis=-2)
    pad = [[0, 0]] * (f.shape.rank - 2) + [[1, 1], [1, 1]]
    return 4.0 * _avg4(tf.pad(f, pad))


def column_scales(X: tf.Tensor, thk: tf.Tensor, usurf: tf.Tensor, arrhenius: tf.Tensor,
                  slidingco: tf.Tensor, dx: tf.Tensor, zeta: tf.Tensor, slope: tf.Tensor,
                  c: FlowConstants, periodic: bool) -> tf.Tensor:
    """Scales (2, Nz, ny, nx) of the solver's variables at the velocity X
    (2, Nz, ny, nx, m/yr): one over the square root of the linearised
    weight of the basal velocity (index 0) and of each layer increment
    (index k: the layer between levels k-1 and k), MPa yr m^-1 per node.
    Zero for a basal velocity that cannot slide (frozen, no sliding): the
    variable is held at zero. One where there is no ice."""
    n, m = c.n, c.m
    U, V, ice, slides = held_velocities(X[0], X[1], thk, usurf, slidingco, dx, slope, c,
                                        periodic)
    col = column_strain(U, V, thk, usurf, arrhenius, dx, zeta, slope, c, periodic)
    p = (n + 1.0) / (2.0 * n)
    secant = tf.reduce_sum(0.25 * col.eff2 ** (p - 1.0), axis=0)  # mean over Gauss points
    viscous = col.Hc * col.dzc * (2.0 * n / (n + 1.0)) * p * col.B * secant
    # an increment moves every level above it: it carries their horizontal stiffness
    above = tf.cumsum(viscous * HORIZONTAL / dx**2, axis=0, reverse=True)
    layers = _cells_to_nodes(viscous * VERTICAL / (col.dzc * col.Hsafe) ** 2 + above, periodic)
    base = _cells_to_nodes(above[0], periodic)
    if c.sliding:
        ub2 = U[0] ** 2 + V[0] ** 2 + c.regu_weertman**2
        base += slidingco * ub2 ** ((1.0 - m) / (2.0 * m)) * ice * slides  # secant
    # (the energy is per ice node; its normalisation scales every weight alike)
    weight = tf.concat([base[None], layers], axis=0)
    # weights under 1e-8 of the largest (a column barely deforming) are raised to it:
    # their scales stay finite in float32
    floor = 1e-8 * tf.reduce_max(weight)
    scale = tf.where(weight > 0, tf.math.rsqrt(tf.maximum(weight, floor)), 1.0)
    scale = tf.concat([scale[:1] * slides[None], scale[1:]], axis=0)
    return tf.stack([scale, scale])


def to_scaled(X: tf.Tensor, scale: tf.Tensor) -> tf.Tensor:
    """The solver's variables of the velocity X: basal velocity and layer
    increments, divided by their scales (0 where the scale is 0)."""
    increments = tf.concat([X[:, :1], X[:, 1:] - X[:, :-1]], axis=1)
    return tf.math.divide_no_nan(increments, scale)


def from_scaled(Y: tf.Tensor, scale: tf.Tensor) -> tf.Tensor:
    """The velocity (2, Nz, ny, nx, m/yr) of the solver's variables Y."""
    return tf.cumsum(Y * scale, axis=1)


def scaled_gradient(g: tf.Tensor, scale: tf.Tensor) -> tf.Tensor:
    """The gradient in the solver's variables of a gradient g in velocity."""
    return tf.cumsum(g, axis=1, reverse=True) * scale
