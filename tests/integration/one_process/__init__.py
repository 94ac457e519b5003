"""Apps in one process (TestClient, raw ASGI), on MemoryStore and each Redis store."""
