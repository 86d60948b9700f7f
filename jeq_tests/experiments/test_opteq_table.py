"""experiments.opteq_table: the equal-parameter budget is the official MON model's."""

from __future__ import annotations

import pytest

from experiments import opteq_table


@pytest.mark.parametrize(
    "architecture, image_shape, in_channels, classes, features, mon_parameters",
    [("dense", (28, 28), 1, 10, 784, 84_313), ("conv", (32, 32), 3, 10, 3072, 172_218)],
)
def test_default_budget_is_the_official_mon_and_every_model_matches_it(
    architecture, image_shape, in_channels, classes, features, mon_parameters
):
    config = opteq_table.Config(architecture=architecture)
    builders = opteq_table.builders(config, features, image_shape, in_channels, classes)
    sizes = opteq_table.widths_and_counts(config, builders)
    mon = "mon" if architecture == "dense" else "mon_conv"
    assert sizes[mon] == (opteq_table.mon_width(config), mon_parameters)
    for name, (_, count) in sizes.items():
        if name not in (mon, "opteq_small"):
            assert abs(count - mon_parameters) / mon_parameters < 0.01, (name, count)
