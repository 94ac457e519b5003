"""The project itself: import layers, the public API, docs, packaging, the locked environments."""
