"""igm-core's Hydra launchers (:mod:`hydra_plugins.igm_launchers.launchers`),
in the package where Hydra looks for plugins; ``igm_run`` registers them
under Hydra's launcher names."""
