"""The frozen run context handed to plugins (no Hydra, no TensorFlow)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class PluginInfo:
    """Provenance of one selected plugin."""

    stage: str
    name: str
    distribution: str
    version: str
    module: str


@dataclass(frozen=True)
class RunContext:
    """Where and how a run happens.

    ``output_dir``: the run's own folder (every file a run writes goes
    there). ``launch_dir``: the folder ``igm_run`` was started from.
    ``data_dir``: ``core.folder_data`` resolved against the launch folder.
    ``job_num``: the job's number in a multirun (0 for a single run).
    ``multirun``: whether the run is one job of a sweep. ``devices``: the
    TensorFlow devices the run may use (filled when TensorFlow starts).
    ``plugins``: the selected plugins with their distributions.
    ``restart``: the checkpoint file this run continues from (None for a
    run from its inputs); its run folder is :attr:`restart_dir`.
    """

    output_dir: Path
    launch_dir: Path = field(default_factory=Path.cwd)
    data_dir: Path = field(default_factory=lambda: Path.cwd() / "data")
    job_num: int = 0
    multirun: bool = False
    devices: tuple[str, ...] = ()
    plugins: tuple[PluginInfo, ...] = ()
    overrides: tuple[str, ...] = ()
    restart: Path | None = None

    @property
    def restart_dir(self) -> Path | None:
        """The run folder of the checkpoint this run continues from (where
        the earlier saves are), or None. It is ``output_dir`` when a run
        continues in its own folder."""
        if self.restart is None:
            return None
        folder = self.restart.parent
        return folder.parent if folder.name == "checkpoints" else folder

    def find_file(self, name: str | Path) -> Path | None:
        """Look a data file up in the output folder, the data folder, then
        the launch folder; absolute paths are taken as they are. ``pkg://``
        names a file shipped inside an installed package
        (``pkg://igm_plugins.data/hintereisferner/input.nc``)."""
        text = str(name)
        if text.startswith("pkg://"):
            from importlib import resources

            package, _, rel = text[len("pkg://"):].partition("/")
            try:
                path = Path(str(resources.files(package).joinpath(rel)))
            except ModuleNotFoundError:
                return None
            return path if path.is_file() else None
        path = Path(text).expanduser()
        if path.is_absolute():
            return path if path.is_file() else None
        for folder in (self.output_dir, self.data_dir, self.launch_dir):
            if (folder / path).is_file():
                return folder / path
        return None
