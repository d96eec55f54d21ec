"""Pure loss functions (tensors in, scalar out), one file per SSL family."""

from cassle.losses.all4one import All4OneTerms, all4one_loss_func, feature_contrast_loss, neighbour_contrast_loss
from cassle.losses.barlow import barlow_loss_func
from cassle.losses.byol import byol_loss_func
from cassle.losses.deepclusterv2 import deepclusterv2_loss_func, spherical_kmeans
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
from cassle.losses.mocov3 import mocov3_loss_func
from cassle.losses.nnclr import nnclr_loss_func
from cassle.losses.ressl import ressl_loss_func
from cassle.losses.simclr import simclr_loss_func
from cassle.losses.simsiam import simsiam_loss_func
from cassle.losses.swav import sinkhorn, swav_loss_func
from cassle.losses.vibcreg import normalized_covariance_loss, vibcreg_loss_func
from cassle.losses.vicreg import (
    covariance_loss,
    invariance_loss,
    variance_loss,
    vicreg_loss_func,
)
from cassle.losses.wmse import whiten, wmse_loss_func

__all__ = [
    "all4one_loss_func",
    "All4OneTerms",
    "barlow_loss_func",
    "byol_loss_func",
    "contrastive_distill",
    "covariance_loss",
    "decorrelative_distill",
    "deepclusterv2_loss_func",
    "dino_center_update",
    "dino_loss_func",
    "dino_teacher_temperature",
    "DISTILL_LOSSES",
    "emp_ssl_loss_func",
    "feature_contrast_loss",
    "invariance_loss",
    "knowledge_distill",
    "mae_loss_func",
    "mocov2plus_loss_func",
    "mocov3_loss_func",
    "neighbour_contrast_loss",
    "nnclr_loss_func",
    "normalized_covariance_loss",
    "patchify",
    "predictive_distill",
    "predictive_mse_distill",
    "ressl_loss_func",
    "simclr_loss_func",
    "simsiam_loss_func",
    "sinkhorn",
    "spherical_kmeans",
    "swav_loss_func",
    "total_coding_rate",
    "variance_loss",
    "vibcreg_loss_func",
    "vicreg_loss_func",
    "whiten",
    "wmse_loss_func",
]
