"""Counting the round trips a Redis client makes, for tests and benchmarks."""

from __future__ import annotations

from typing import Any


class RoundTrips:
    """Counts the round trips a ``redis.asyncio`` client makes: each command sent alone, and
    each pipeline sent (all its commands in one round trip; the issuer's refresh sends its
    rotation and the session's record that way). (Redis's own ``INFO commandstats`` counts
    the commands inside a Lua script one by one, so it cannot tell one script call from
    five commands.) Build the store on the client afterwards."""

    def __init__(self, client: Any) -> None:
        self.count = 0
        send, pipeline = client.execute_command, client.pipeline

        async def counted(*args: Any, **options: Any) -> Any:
            self.count += 1
            return await send(*args, **options)

        def counted_pipeline(*args: Any, **options: Any) -> Any:
            pipe = pipeline(*args, **options)
            execute = pipe.execute

            async def counted_execute(*a: Any, **o: Any) -> Any:
                self.count += 1
                return await execute(*a, **o)

            pipe.execute = counted_execute
            return pipe

        client.execute_command = counted
        client.pipeline = counted_pipeline
