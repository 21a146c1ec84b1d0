"""Experiments built from everything below: ``infnet study`` (``study``) and finite against
infinite width (``finite_vs_infinite``)."""
