"""Staged optimisation: parameters, losses, stages as data, the generic Adam loop, and the public API."""

from redafit.fit.api import FitResult, fit_batch, fit_image  # noqa: F401
from redafit.fit.config import FitConfig, StageConfig  # noqa: F401
from redafit.fit.pipeline import PhotoFit, fit_photo  # noqa: F401
