"""A global batch that does not split over the processes is refused naming the knobs that set the count."""

from __future__ import annotations

import pytest

from stylepipe.core.config import ConfigError
from stylepipe.train.distributed import DistEnv, per_rank_batch


def test_error_names_the_batch_key_and_torchruns_process_knobs():
    with pytest.raises(ConfigError, match=r"train_adain\.batch_size=8 does not split over 16 processes .*--nnodes"):
        per_rank_batch(8, DistEnv(0, 16, 0), "train_adain")
    assert per_rank_batch(8, DistEnv(0, 8, 0), "train_adain") == 1
