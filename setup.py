"""Only the optional C extension lives here; everything else is in pyproject.toml.

``eventlog._speedups`` makes the check that a saved session's old entries are
untouched about ten times faster.  It is optional: where it cannot be compiled (no C
compiler), the install goes on and eventlog uses the pure-Python path, which gives
the same answers.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("eventlog._speedups", ["eventlog/_speedups.c"], optional=True)])
