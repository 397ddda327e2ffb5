"""Import every reader module so its Source subclass registers itself. One line per format."""

import importlib

_MODULES = (
    "dqn_replay",
    "rlu_atari",
    "minari",
    "d4rl",
    "coco",
    "img2dataset",
    "hf_parquet",
    "rlds",
    "vpt",
)

for _m in _MODULES:
    importlib.import_module(f"{__package__}.{_m}")
