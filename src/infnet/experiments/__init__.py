"""Experiments built from everything below: ``infnet study`` (``study``), finite against
infinite width (``finite_vs_infinite``) and its convolutional reproduction after Lee et al.
2020 (``lee2020``, ``infnet lee2020``)."""
