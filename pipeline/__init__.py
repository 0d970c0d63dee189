"""dae-report: the Fashion-MNIST denoising-autoencoder lab as a one-command report."""

__version__ = "0.1.0"
