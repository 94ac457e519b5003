"""One real redis-server under the kit: key layout, configuration, the revocation view, epochs."""
