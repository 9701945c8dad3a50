"""Only the C extensions live here; everything else is in pyproject.toml.

`optional=True`: if it does not compile, the install still succeeds and the collector uses
its pure-Python decoder (collector.fastdecode logs that once) and reads every packet with the
`mqtt5` codec (collector.mqtt_protocol); the recommender runs its batch stages (candidates, profiles,
score and rank, answers) with numpy (recommender.scorerank logs that once).
"""

from setuptools import Extension, setup

RECOMMENDER = ("scorerank", "topk", "dot", "candidates", "stages")  # recommender/_NAME.c

setup(ext_modules=[Extension("collector._fastdecode", ["collector/_fastdecode.c", "collector/_fd_message.c"],
                             depends=["collector/_fastdecode.h", "collector/_fd_msgpack.h"], optional=True),
                   Extension("collector._mqttscan", ["collector/_mqttscan.c"], optional=True),
                   # -ffp-contract=off: profiles round each float32 product as numpy does (no fused multiply-add)
                   Extension("recommender._scorerank",
                             [f"recommender/_{name}.c" for name in RECOMMENDER],
                             depends=["recommender/_native.h"], extra_compile_args=["-ffp-contract=off"],
                             optional=True)])
