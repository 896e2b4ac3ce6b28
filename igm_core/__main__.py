"""``python -m igm_core ARGS`` is ``igm_run ARGS``."""

from igm_core.app import console

if __name__ == "__main__":
    console()
