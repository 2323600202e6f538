"""Benchmarks: scripts that measure lutnet against baselines; results land in benchmarks/results/.

onnxruntime's telemetry is off in every benchmark process and in the servers and peers they start (they
inherit the environment), as it is in ``lutnet serve``: its threads would otherwise share the measured CPU.
"""

from lutnet.ortenv import disable_onnxruntime_telemetry

disable_onnxruntime_telemetry()
