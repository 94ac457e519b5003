"""The adversarial security suite: one module per group of SECURITY.md's test catalogue."""
