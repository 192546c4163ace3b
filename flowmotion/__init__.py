"""FlowMotion: training-free video motion transfer for flow-matching text-to-video models.

import flowmotion
pipe = flowmotion.load_pipeline("embedded")          # or a hub id / local folder of Wan2.1
out = flowmotion.transfer(pipe, "playblast.mp4", "a knight walking through a misty forest")
out.frames                                             # float32 (frames, height, width, 3) in [0, 1]
"""

from ._version import __version__
from .config import FlowMotionConfig
from .errors import FlowMotionError, TransferCancelled
from .loading import EMBEDDED_MODEL, WAN_MODEL_ID, load_pipeline
from .progress import Progress, RunStats
from .request import StepInfo, TransferRequest
from .transfer import FlowMotionOutput, forward_pass_count, round_trip, run_transfer, transfer

__all__ = [
    "EMBEDDED_MODEL",
    "FlowMotionConfig",
    "FlowMotionError",
    "FlowMotionOutput",
    "Progress",
    "RunStats",
    "StepInfo",
    "TransferCancelled",
    "TransferRequest",
    "WAN_MODEL_ID",
    "__version__",
    "forward_pass_count",
    "load_pipeline",
    "round_trip",
    "run_transfer",
    "transfer",
]
