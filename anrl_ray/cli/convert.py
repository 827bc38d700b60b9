"""``anrl-ray convert DATASET``: parsers and handlers of the dataset converters (thin)."""

from __future__ import annotations


def register(conv_sub) -> None:
    """Add one sub-command per converter to ``anrl-ray convert``."""
    from anrl_ray.data import converters, synthetic

    synthetic.register_cli(conv_sub)
    converters.register_cli(conv_sub)
