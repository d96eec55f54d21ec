"""Self-supervised methods: one LightningModule per method on ``BaseMethod``.

``METHODS`` maps the command-line name to the class; strategies wrap these
classes through the contract in ``docs/contracts.md``.
"""

from __future__ import annotations

from cassle.methods.barlow_twins import BarlowTwins
from cassle.methods.base import BaseMethod
from cassle.methods.byol import BYOL
from cassle.methods.emp_ssl import EMPSSL
from cassle.methods.mae import MAE
from cassle.methods.mocov2plus import MoCoV2Plus
from cassle.methods.momentum import BaseMomentumMethod, cosine_tau, ema_update
from cassle.methods.optim import LARS, build_optimizer, build_scheduler
from cassle.methods.simclr import SimCLR
from cassle.methods.simsiam import SimSiam
from cassle.methods.supcon import SupCon
from cassle.methods.swav import SwAV
from cassle.methods.vicreg import VICReg

METHODS: dict[str, type[BaseMethod]] = {
    "barlow_twins": BarlowTwins,
    "byol": BYOL,
    "emp_ssl": EMPSSL,
    "mae": MAE,
    "mocov2plus": MoCoV2Plus,
    "simclr": SimCLR,
    "simsiam": SimSiam,
    "supcon": SupCon,
    "swav": SwAV,
    "vicreg": VICReg,
}

__all__ = [
    "LARS",
    "METHODS",
    "BYOL",
    "BarlowTwins",
    "EMPSSL",
    "MAE",
    "BaseMethod",
    "BaseMomentumMethod",
    "MoCoV2Plus",
    "SimCLR",
    "SimSiam",
    "SupCon",
    "SwAV",
    "VICReg",
    "build_optimizer",
    "build_scheduler",
    "cosine_tau",
    "ema_update",
]
