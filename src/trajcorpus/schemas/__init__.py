"""Record shapes every stage agrees on: Episode records (SPEC 2) and the catalog model."""

from .catalog import (
    Catalog,
    DatasetEntry,
    FilterSettings,
    SequenceSettings,
    TextModelSettings,
    TokenizeSettings,
    load_catalog,
    parse_catalog,
)
from .episode import (
    ACTION_KINDS,
    OBS_KINDS,
    Episode,
    EpisodeSummary,
    Rejected,
    episode_from_arrow,
    episode_to_arrow,
    ordered_observation_names,
)

__all__ = [
    "Catalog", "DatasetEntry", "FilterSettings", "SequenceSettings",
    "TextModelSettings", "TokenizeSettings", "load_catalog", "parse_catalog",
    "ACTION_KINDS", "OBS_KINDS", "Episode", "EpisodeSummary", "Rejected",
    "episode_from_arrow", "episode_to_arrow", "ordered_observation_names",
]
