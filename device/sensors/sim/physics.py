"""Mounting orientation and gravity: what a resting accelerometer reads.

An accelerometer measures specific force: at rest it reads 1 g pointing *up*, away from the earth.
``R`` (sensor frame -> world frame, world z up) is the mounting orientation; the sensor then reads
gravity's reaction ``R.T @ (0, 0, g)`` on its own axes. Orientations are given as

* roll, pitch, yaw in degrees: ``R = Rz(yaw) @ Ry(pitch) @ Rx(roll)``;
* a face pointing up: ``"z_up"`` (flat, the default: +1 g on Z), ``"z_down"``, ``"x_up"``, ``"x_down"``,
  ``"y_up"``, ``"y_down"``;
* ``"random"``: a rotation drawn uniformly (from the chip's seed);
* a 3x3 rotation matrix.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

STANDARD_GRAVITY = 9.80665

FACES = {"z_up": (0.0, 0.0, 0.0), "z_down": (180.0, 0.0, 0.0), "x_up": (0.0, -90.0, 0.0),
         "x_down": (0.0, 90.0, 0.0), "y_up": (90.0, 0.0, 0.0), "y_down": (-90.0, 0.0, 0.0)}


def rotation_from_euler(roll_deg: float, pitch_deg: float, yaw_deg: float) -> np.ndarray[Any, Any]:
    """``Rz(yaw) @ Ry(pitch) @ Rx(roll)``, angles in degrees."""
    r, p, y = (math.radians(a) for a in (roll_deg, pitch_deg, yaw_deg))
    rx = np.array([[1, 0, 0], [0, math.cos(r), -math.sin(r)], [0, math.sin(r), math.cos(r)]])
    ry = np.array([[math.cos(p), 0, math.sin(p)], [0, 1, 0], [-math.sin(p), 0, math.cos(p)]])
    rz = np.array([[math.cos(y), -math.sin(y), 0], [math.sin(y), math.cos(y), 0], [0, 0, 1]])
    rotation: np.ndarray[Any, Any] = rz @ ry @ rx
    return rotation


def random_rotation(rng: np.random.Generator) -> np.ndarray[Any, Any]:
    """A rotation drawn uniformly over SO(3) (a normalised Gaussian quaternion)."""
    w, x, y, z = rng.normal(size=4)
    n = math.sqrt(w * w + x * x + y * y + z * z)
    w, x, y, z = w / n, x / n, y / n, z / n
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def orientation_matrix(orientation: Any, rng: np.random.Generator) -> np.ndarray[Any, Any]:
    """The rotation for any of the accepted spellings (see the module docstring)."""
    if orientation is None:
        return np.eye(3)
    if isinstance(orientation, str):
        if orientation == "random":
            return random_rotation(rng)
        if orientation in FACES:
            return rotation_from_euler(*FACES[orientation])
        raise ValueError(f"orientation {orientation!r}: use roll, pitch, yaw in degrees, 'random' or one of "
                         f"{', '.join(FACES)}")
    m = np.asarray(orientation, dtype=np.float64)
    if m.shape == (3,):
        return rotation_from_euler(*m.tolist())
    if m.shape == (3, 3):
        if not np.allclose(m @ m.T, np.eye(3), atol=1e-6) or not np.isclose(np.linalg.det(m), 1.0, atol=1e-6):
            raise ValueError("orientation: a 3x3 matrix must be a rotation (orthonormal, determinant 1)")
        return m
    raise ValueError(f"orientation: expected roll, pitch, yaw (3 numbers) or a 3x3 matrix, got shape {list(m.shape)}")


def gravity_in_sensor_frame(rotation: np.ndarray[Any, Any], g: float = STANDARD_GRAVITY) -> np.ndarray[Any, Any]:
    """What a resting accelerometer mounted with ``rotation`` reads on its x, y, z axes (m/s²)."""
    gravity: np.ndarray[Any, Any] = rotation.T @ np.array([0.0, 0.0, g])
    return gravity


def uniform_within(rng: np.random.Generator, bounds: Sequence[float]) -> np.ndarray[Any, Any]:
    """One draw per bound, uniform in ``[-bound, +bound]`` (a part inside its datasheet's typical tolerance)."""
    b = np.asarray(bounds, dtype=np.float64)
    return rng.uniform(-b, b)
