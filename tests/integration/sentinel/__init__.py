"""A real Sentinel-managed primary and replica: the view, failovers."""
