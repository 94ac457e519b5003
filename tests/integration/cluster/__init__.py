"""A real 3-primary Redis Cluster under the kit."""
