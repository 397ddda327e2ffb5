"""Observation and action dimensions of the Gymnasium MuJoCo locomotion environments.

From the environments' own definitions (Gymnasium's Hopper, HalfCheetah and Walker2d, v2 to v5,
default ``exclude_current_positions_from_observation=True``): the observation is the joint
positions ``qpos[1:]`` (the root's x is left out) followed by the velocities ``qvel``, named after
the model's joints; the action is one torque per actuated joint, in the order of the actuators.
"""

from __future__ import annotations

import re

__all__ = ["MUJOCO_ENVS", "mujoco_env", "mujoco_semantics"]

_POS_UNITS = {"rootz": "m", "rootx": "m"}


def _layout(joints: tuple[str, ...], actuated: tuple[str, ...]) -> dict:
    pos = [f"{j} position" for j in joints[1:]]
    vel = [f"{j} velocity" for j in joints]
    pos_u = [_POS_UNITS.get(j, "rad") for j in joints[1:]]
    vel_u = ["m/s" if j in _POS_UNITS else "rad/s" for j in joints]
    return {"observation": {"names": pos + vel, "units": pos_u + vel_u},
            "actions": {"names": [f"{j} torque" for j in actuated],
                        "units": ["control in [-1, 1] (torque = gear x control, N m)"] * len(actuated)}}


_ROOT = ("rootx", "rootz", "rooty")
MUJOCO_ENVS: dict[str, dict] = {
    "hopper": _layout(_ROOT + ("thigh_joint", "leg_joint", "foot_joint"),
                      ("thigh_joint", "leg_joint", "foot_joint")),
    "halfcheetah": _layout(_ROOT + ("bthigh", "bshin", "bfoot", "fthigh", "fshin", "ffoot"),
                           ("bthigh", "bshin", "bfoot", "fthigh", "fshin", "ffoot")),
    "walker2d": _layout(_ROOT + ("thigh_joint", "leg_joint", "foot_joint", "thigh_left_joint",
                                 "leg_left_joint", "foot_left_joint"),
                        ("thigh_joint", "leg_joint", "foot_joint", "thigh_left_joint",
                         "leg_left_joint", "foot_left_joint")),
}


def mujoco_env(task: str) -> str | None:
    """The environment key of a task name ("Hopper-v5", "hopper-medium-replay-v2" -> "hopper")."""
    m = re.match(r"[a-z0-9]+", task.rsplit("/", 1)[-1].lower())
    key = m.group(0) if m else ""
    key = "walker2d" if key == "walker" else key
    return key if key in MUJOCO_ENVS else None


def mujoco_semantics(task: str) -> dict | None:
    """{"observation": {names, units}, "actions": {names, units}} for the task, or None."""
    env = mujoco_env(task)
    return None if env is None else MUJOCO_ENVS[env]
