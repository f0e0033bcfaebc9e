"""The ahead-of-time memory check behind `python -m launch.aot`, one step per module.

Before JAX is imported (neither module imports it; launch/aot.py uses them first):
  resolve   the config rebuilt for the chosen TPU slice;
  backend   XLA:CPU with fake devices or XLA:TPU from libtpu's description, set in the environment.
After (each imports JAX at its top):
  devices   the slice's devices for the mesh;
  abstract  every model of the run as shapes and dtypes, nothing allocated;
  analytic  per-device bytes from the sharding rules' arithmetic;
  programs  the PPO programs lowered and compiled, their memory_analysis();
  assess    the analytic count beside the compiled one, each program's peak, the verdict;
  report    the verdict as text.
"""

# The programs of one PPO iteration, in the order they are compiled and reported. Here, not in
# `programs`, because launch/aot.py checks --programs before JAX may be imported.
PROGRAMS = ("update", "sample", "score")
