"""The adversarial security suite: one module per group of SECURITY.md's test catalogue.

This directory is a package on purpose. ``tests/`` has no ``__init__.py``, so pytest's
default (prepend) import mode names every test module by its basename; ``test_rotation.py``
and ``test_cookies.py`` exist in ``tests/`` too and would collide. As a package these are
``security.test_rotation`` and friends, its conftest is ``security.conftest`` (so the bare
``conftest`` module stays ``tests/conftest.py``), and ``tests/`` is put on ``sys.path``, so
the shared helpers import by bare name as everywhere else (``from apps import build_app``).
"""
