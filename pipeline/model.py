"""Lab §5: the convolutional denoising autoencoder, layer names as in the lab."""

from __future__ import annotations

import keras
from keras import layers

from pipeline.config import RESIDUAL_DEPTH

INPUT_SHAPE = (28, 28, 1)


def build_lab_autoencoder() -> keras.Model:
    """Conv32-pool-Conv64-pool / Conv64-up-Conv32-up-Conv1: 74 497 parameters, latent 7×7×64."""
    inputs = keras.Input(shape=INPUT_SHAPE, name="denoise_input")  # (B, 28, 28, 1)

    # Encoder
    x = layers.Conv2D(32, 3, activation="relu", padding="same", name="enc_conv1")(inputs)
    x = layers.MaxPooling2D(2, padding="same", name="enc_pool1")(x)  # (B, 14, 14, 32)
    x = layers.Conv2D(64, 3, activation="relu", padding="same", name="enc_conv2")(x)
    encoded = layers.MaxPooling2D(2, padding="same", name="enc_pool2")(x)  # (B, 7, 7, 64)

    # Decoder
    x = layers.Conv2D(64, 3, activation="relu", padding="same", name="dec_conv1")(encoded)
    x = layers.UpSampling2D(2, name="dec_up1")(x)  # (B, 14, 14, 64)
    x = layers.Conv2D(32, 3, activation="relu", padding="same", name="dec_conv2")(x)
    x = layers.UpSampling2D(2, name="dec_up2")(x)  # (B, 28, 28, 32)
    # Sigmoid: pixels live in [0, 1], and binary cross-entropy expects probabilities. float32
    # under mixed precision too: the reconstructions and their MSE at full precision.
    outputs = layers.Conv2D(
        1, 3, activation="sigmoid", padding="same", dtype="float32", name="dec_output"
    )(x)

    return keras.Model(inputs, outputs, name="denoising_autoencoder")


def architecture(model: keras.Model) -> dict:
    """The model summary as plain data, for metrics.json and the report's table."""
    return {
        "name": model.name,
        "parameters": int(model.count_params()),
        "latent_shape": list(latent_shape(model)),
        "layers": [
            {
                "name": layer.name,
                "type": type(layer).__name__,
                "output_shape": list(layer.output.shape[1:]),
                "parameters": int(layer.count_params()),
            }
            for layer in model.layers
        ],
    }


def build_residual(channels: int = 32, depth: int = RESIDUAL_DEPTH) -> keras.Model:
    """DnCNN-style: a stack of 3×3 convolutions at full resolution that predicts the noise;
    the output is the input minus that prediction (residual learning)."""
    inputs = keras.Input(shape=INPUT_SHAPE, name="denoise_input")
    x = layers.Conv2D(channels, 3, padding="same", activation="relu", name="conv_in")(inputs)
    for index in range(1, depth - 1):
        x = layers.Conv2D(channels, 3, padding="same", use_bias=False, name=f"conv{index}")(x)
        x = layers.BatchNormalization(name=f"bn{index}")(x)
        x = layers.Activation("relu", name=f"relu{index}")(x)
    estimated_noise = layers.Conv2D(1, 3, padding="same", name="noise")(x)  # (B, 28, 28, 1)
    outputs = layers.Subtract(dtype="float32", name="denoised")([inputs, estimated_noise])
    return keras.Model(inputs, outputs, name="residual_denoiser")


def _double_conv(x, channels: int, name: str):
    for index in (1, 2):
        x = layers.Conv2D(channels, 3, padding="same", use_bias=False, name=f"{name}_conv{index}")(
            x
        )
        x = layers.BatchNormalization(name=f"{name}_bn{index}")(x)
        x = layers.Activation("relu", name=f"{name}_relu{index}")(x)
    return x


def build_unet(base: int = 16, growth: tuple[int, int] = (2, 4)) -> keras.Model:
    """A small U-Net: two poolings (28 → 14 → 7), batch norm, skip connections that carry the
    fine detail past the bottleneck, and a sigmoid output. `base` channels at 28×28, `growth`
    times as many at 14×14 and 7×7 (benchmarks/unet_trials.py measures other growths)."""
    inner, bottom_channels = growth[0] * base, growth[1] * base
    inputs = keras.Input(shape=INPUT_SHAPE, name="denoise_input")
    level1 = _double_conv(inputs, base, "enc1")  # (B, 28, 28, base)
    level2 = _double_conv(layers.MaxPooling2D(2, name="pool1")(level1), inner, "enc2")  # 14×14
    bottom = _double_conv(layers.MaxPooling2D(2, name="pool2")(level2), bottom_channels, "bottom")
    x = layers.UpSampling2D(2, name="up2")(bottom)  # 7×7 → 14×14
    x = _double_conv(layers.Concatenate(name="skip2")([x, level2]), inner, "dec2")
    x = layers.UpSampling2D(2, name="up1")(x)
    x = _double_conv(layers.Concatenate(name="skip1")([x, level1]), base, "dec1")
    outputs = layers.Conv2D(1, 1, activation="sigmoid", dtype="float32", name="dec_output")(x)
    return keras.Model(inputs, outputs, name="unet")


BUILDERS = {
    "lab": lambda width: build_lab_autoencoder(),
    "residual": lambda width: build_residual(width),
    "unet": lambda width: build_unet(width),
}


def build(name: str, width: int) -> keras.Model:
    """The model called `name` (config model.name); `width` is the base channel count of the
    residual and U-Net models (the lab's model has its own fixed widths)."""
    return BUILDERS[name](width)


def latent_shape(model: keras.Model) -> tuple[int, ...] | None:
    """Shape of the narrowest feature map, without the batch axis: (7, 7, 64) for the lab."""
    shapes = [
        tuple(layer.output.shape[1:]) for layer in model.layers if len(layer.output.shape) == 4
    ]
    return min(shapes, key=lambda shape: (shape[0] * shape[1], -shape[2])) if shapes else None
