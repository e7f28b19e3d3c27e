"""Many videos on a Ray cluster: `run(inputs, BatchJob(...), ClusterOptions(...)) -> BatchReport`.

Ray (the `cluster` extra) is imported only when a batch runs, and only by this package.
"""

from .inputs import find_inputs
from .job import TASKS, BatchJob
from .report import BatchReport, VideoRecord
from .runner import ClusterOptions, run

__all__ = ["TASKS", "BatchJob", "BatchReport", "ClusterOptions", "VideoRecord", "find_inputs", "run"]
