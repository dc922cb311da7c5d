"""Harnesses run from the repository root (see tools/README.md): the crash and fuzz
drivers (``tools/crash``, ``tools/fuzz``, also ``python -m tools.crash`` and
``python -m tools.fuzz``), their machinery (:mod:`tools.crashing`,
:mod:`tools.fuzzing`, which the test suite runs briefly), and the generator of the
format's test vectors (``tools/make_vectors.py``).  Not part of the installed package.
"""
