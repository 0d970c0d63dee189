"""Lab §5: the convolutional denoising autoencoder, layer names as in the lab."""

from __future__ import annotations

import keras
from keras import layers

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
    # Sigmoid: pixels live in [0, 1], and binary cross-entropy expects probabilities.
    outputs = layers.Conv2D(1, 3, activation="sigmoid", padding="same", name="dec_output")(x)

    return keras.Model(inputs, outputs, name="denoising_autoencoder")


def latent_shape(model: keras.Model) -> tuple[int, ...]:
    """Shape of the encoder's output, without the batch axis: (7, 7, 64) for the lab model."""
    return tuple(model.get_layer("enc_pool2").output.shape[1:])


def describe(model: keras.Model) -> dict:
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
