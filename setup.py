"""Only the optional C extension lives here; everything else is in pyproject.toml.

``eventlog._speedups`` holds C twins of four pure-Python walks over objects (the
check that a saved session's old entries are untouched, value validation, and the
copy of a value); it parses no bytes.  It is optional: where it cannot be compiled
(no C compiler) the install goes on, and eventlog uses the pure-Python twins, which
give the same answers.  It is not built for a free-threaded CPython (its walks rely
on the GIL), and EVENTLOG_NO_SPEEDUPS=1 makes eventlog ignore a built one.
"""

import sysconfig

from setuptools import Extension, setup

free_threaded = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
setup(
    ext_modules=[]
    if free_threaded
    else [Extension("eventlog._speedups", ["eventlog/_speedups.c"], optional=True)]
)
