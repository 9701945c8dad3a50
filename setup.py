"""Only the C extensions live here; everything else is in pyproject.toml.

`optional=True`: if it does not compile, the install still succeeds and the collector uses
its pure-Python decoder (collector.fastdecode logs that once) and reads every packet with the
`mqtt5` codec (collector.mqtt_protocol); the recommender scores and ranks batches with numpy
(recommender.scorerank logs that once).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("collector._fastdecode", ["collector/_fastdecode.c"], optional=True),
                   Extension("collector._mqttscan", ["collector/_mqttscan.c"], optional=True),
                   Extension("recommender._scorerank", ["recommender/_scorerank.c"], optional=True)])
