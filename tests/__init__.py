"""The test suite: a package, so that tests, their helpers (``tests.support``) and the
benchmarks import the helpers by one name."""
