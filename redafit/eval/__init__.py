"""Evaluation: alignment (ICP with scale, Procrustes), metrics and protocols, dataset adapters, the synthetic
benchmark, and the runner behind ``redafit eval``.

Heavy pieces import lazily; ``from redafit.eval import micc_protocol`` etc. work as shortcuts.
"""

from redafit.eval.alignment import (  # noqa: F401
    AlignmentResult,
    Similarity,
    align_landmarks_then_surface,
    icp,
    umeyama,
)
from redafit.eval.datasets import DATASETS, Case, GroundTruth, open_dataset  # noqa: F401
from redafit.eval.metrics import (  # noqa: F401
    ShapeError,
    closest_points_on_mesh,
    micc_protocol,
    now_protocol,
    point_to_plane,
    point_to_surface,
    summarize,
    symmetric_point_to_point,
)


def generate_synthetic(*args, **kwargs):
    """See :func:`redafit.eval.synthetic.generate_synthetic`."""
    from redafit.eval.synthetic import generate_synthetic as _g

    return _g(*args, **kwargs)


def run_eval(*args, **kwargs):
    """See :func:`redafit.eval.runner.run_eval`."""
    from redafit.eval.runner import run_eval as _r

    return _r(*args, **kwargs)
