"""harl_torchrl.video: the checks made before a run that records videos starts."""

import sys

import pytest

from harl_torchrl.errors import ConfigError, MissingDependencyError
from harl_torchrl.video import check_video_support


def test_a_family_without_a_renderer_is_refused_with_the_fix():
    with pytest.raises(ConfigError, match=r"env.family=smax: no renderer.*Fix: eval.video_interval=0"):
        check_video_support("smax")


def test_tensorboard_videos_need_moviepy_1_and_say_so(monkeypatch):
    pytest.importorskip("imageio_ffmpeg", reason="the video extra")
    monkeypatch.setitem(sys.modules, "moviepy.editor", None)  # what moviepy 2 (or none) gives: ImportError
    check_video_support("vmas", ["csv", "wandb"])  # only TensorBoard encodes through moviepy
    with pytest.raises(MissingDependencyError, match=r"moviepy<2.*pip install 'harl-torchrl\[video\]'"):
        check_video_support("vmas", ["csv", "tensorboard"])
