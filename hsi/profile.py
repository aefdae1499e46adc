"""Cost table of networks: `python -m hsi.profile [model=<name>] [all=true] [data=<scene>]`, a Hydra
app over `conf/` (the work is `hsi.studies.profiling.profile`).

Per network: parameters, multiply-accumulates per window, weight size, CPU latency per window at
the first batch size and throughput at the others, for a scene's window (`data=<scene>`) or the
`bands` x `patch_size` window typed in; written as `profile.md` and `profile.csv` in the run folder.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

import hsi.run.config  # noqa: F401  (registers the ${hsi_root:} resolver)
from hsi.run.compat_keys import refuse_old_keys_in_argv
from hsi.studies.profiling import profile


@hydra.main(version_base="1.3", config_path="../conf", config_name="profile")
def main(cfg: DictConfig) -> None:
    profile(cfg)


if __name__ == "__main__":
    refuse_old_keys_in_argv("profile")  # before Hydra parses the command line
    main()
