"""Facts shared by a family of kinds (hub task categories and tags, whether records can hold
text, which options select sub-datasets): a reader subclasses its family and declares only what
is its own (``kind``, ``description``, ``Options``). A family sets no ``kind``, so it is not a
registered reader."""

from __future__ import annotations

from .base import Label, Source, SourceOptions

__all__ = ["OfflineRL", "AtariLogs", "MujocoLogs", "CaptionSource", "TaskAgentOptions"]


class OfflineRL(Source):
    """Logged agent experience (the filter ranks episodes by return)."""

    task_categories = ("reinforcement-learning",)


class AtariLogs(OfflineRL):
    """Atari logs: frames and ALE actions, no text; ``games``/``runs`` select under a root."""

    tags = ("atari", "offline-rl")
    environment = "atari"
    carries_text = False
    selection_options = ("games", "runs")


class MujocoLogs(OfflineRL):
    """MuJoCo (gym locomotion) logs: continuous states and actions."""

    tags = ("mujoco", "offline-rl")
    environment = "mujoco"


class CaptionSource(Source):
    """The image-caption family: one-step records of an image and its caption."""

    task_categories = ("image-to-text",)
    tags = ("image-captioning",)


class TaskAgentOptions(SourceOptions):
    """The options of a caption reader that names its records: ``task`` and ``agent``."""

    task: Label = None  # default: the dataset id
    agent: Label = None  # default: the reader's own (the split or "img2dataset")
