"""Pure loss functions (tensors in, scalar out), one file per SSL family."""

from cassle.losses.barlow import barlow_loss_func
from cassle.losses.byol import byol_loss_func
from cassle.losses.dino import dino_center_update, dino_loss_func, dino_teacher_temperature
from cassle.losses.distill import (
    DISTILL_LOSSES,
    contrastive_distill,
    decorrelative_distill,
    knowledge_distill,
    predictive_distill,
    predictive_mse_distill,
)
from cassle.losses.emp_ssl import emp_ssl_loss_func, total_coding_rate
from cassle.losses.mae import mae_loss_func, patchify
from cassle.losses.mocov2plus import mocov2plus_loss_func
from cassle.losses.simclr import simclr_loss_func
from cassle.losses.simsiam import simsiam_loss_func
from cassle.losses.swav import sinkhorn, swav_loss_func
from cassle.losses.vicreg import (
    covariance_loss,
    invariance_loss,
    variance_loss,
    vicreg_loss_func,
)

__all__ = [
    "DISTILL_LOSSES",
    "barlow_loss_func",
    "byol_loss_func",
    "contrastive_distill",
    "covariance_loss",
    "decorrelative_distill",
    "dino_center_update",
    "dino_loss_func",
    "dino_teacher_temperature",
    "emp_ssl_loss_func",
    "invariance_loss",
    "mae_loss_func",
    "knowledge_distill",
    "mocov2plus_loss_func",
    "patchify",
    "predictive_distill",
    "predictive_mse_distill",
    "simclr_loss_func",
    "simsiam_loss_func",
    "sinkhorn",
    "swav_loss_func",
    "total_coding_rate",
    "variance_loss",
    "vicreg_loss_func",
]
