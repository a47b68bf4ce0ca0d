"""Gatys, Ecker & Bethge's optimisation: the algorithm and `stylepipe gatys`'s file handling."""
