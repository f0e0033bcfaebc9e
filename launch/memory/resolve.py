"""The config for a TPU slice: what `--topology` changes in a config before anything is built.

A config file that lists `topologies` is rebuilt by its own `get_config(topology)` (mesh and
microbatches depend on the slice) with the command line's overrides applied again; any other config
keeps its values and takes the slice's default mesh (configs/topologies.py). JAX is not imported
here: launch/aot.py resolves the config before it knows how many fake devices to make.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from configs import topologies as topo


def _config_module(path: str):
    spec = importlib.util.spec_from_file_location("_aot_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def config_for(topology: str, cfg, config_path: str, overrides: dict[str, Any]):
    """The config for `topology`: rebuilt by the config file when it lists topologies (mesh and
    microbatches depend on the slice), else `cfg` with the slice's default mesh."""
    if topology == cfg.get("topology"):
        return cfg
    if "topologies" in cfg:
        new = _config_module(config_path).get_config(topology)
        new.update_from_flattened_dict(dict(overrides))
        return new
    new = cfg.copy_and_resolve_references()
    new.unlock()
    new.mesh.shape = topo.mesh_shape(topology)
    new.topology = topology
    return new
