"""The evaluate stage: AdaIN and Johnson scored against the colour-transfer floor and Gatys, and the report."""
