"""What tests and benchmarks share: real servers (Redis, uvicorn, identity providers) and
their launcher, apps, clocks, keys and waiting helpers."""
