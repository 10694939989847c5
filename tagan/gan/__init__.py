"""The GAN trainer of every GAN stage (MNIST CGAN, DCGAN, tag CGAN, open CGAN): `fit(task, g, d, train, optim)`.

optim.py: the settings (OptimConfig, TrainConfig), losses and schedules; trainer.py: GANTask (what a GAN plugs in)
and fit. The names below are the trainer's public face: `from tagan import gan; gan.fit(...)`.
"""

from tagan.gan.optim import OptimConfig, TrainConfig
from tagan.gan.trainer import Batch, Fake, FitResult, GANTask, ImageGANTask, fit

__all__ = ["Batch", "Fake", "FitResult", "GANTask", "ImageGANTask", "OptimConfig", "TrainConfig", "fit"]
