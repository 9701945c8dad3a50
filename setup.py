"""Only the C extension lives here; everything else is in pyproject.toml.

`optional=True`: if it does not compile, the install still succeeds and the collector uses
its pure-Python decoder (collector.fastdecode logs that once).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("collector._fastdecode", ["collector/_fastdecode.c"], optional=True)])
