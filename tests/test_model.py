import numpy as np

from pipeline import model
from pipeline.config import MODEL_LOSSES, loss_for


def test_lab_architecture():
    autoencoder = model.build_lab_autoencoder()
    assert autoencoder.count_params() == 74_497
    assert model.latent_shape(autoencoder) == (7, 7, 64)
    assert [layer.name for layer in autoencoder.layers] == [
        "denoise_input",
        "enc_conv1",
        "enc_pool1",
        "enc_conv2",
        "enc_pool2",
        "dec_conv1",
        "dec_up1",
        "dec_conv2",
        "dec_up2",
        "dec_output",
    ]


def test_output_is_an_image_in_the_unit_interval():
    autoencoder = model.build_lab_autoencoder()
    output = autoencoder.predict(np.random.default_rng(0).random((3, 28, 28, 1)), verbose=0)
    assert output.shape == (3, 28, 28, 1)
    assert output.min() >= 0.0 and output.max() <= 1.0


def test_architecture_is_plain_data():
    summary = model.architecture(model.build_lab_autoencoder())
    assert summary["parameters"] == 74_497
    assert summary["latent_shape"] == [7, 7, 64]
    assert sum(layer["parameters"] for layer in summary["layers"]) == 74_497
    assert summary["layers"][-1] == {
        "name": "dec_output",
        "type": "Conv2D",
        "output_shape": [28, 28, 1],
        "parameters": 289,
    }


import pytest  # noqa: E402


@pytest.mark.parametrize(
    "name, width, parameters",
    [("lab", 32, 74_497), ("residual", 32, 56_673), ("unet", 16, 118_945)],
)
def test_every_offered_model_maps_images_to_images(name, width, parameters):
    built = model.build(name, width)
    assert built.count_params() == parameters
    output = built.predict(np.random.default_rng(0).random((2, 28, 28, 1)), verbose=0)
    assert output.shape == (2, 28, 28, 1)


def test_losses_follow_the_recipe_unless_set():
    assert loss_for("lab", "auto") == "binary_crossentropy"
    assert loss_for("unet", "auto") == "mse"
    assert loss_for("lab", "mae") == "mae"


def test_every_model_the_config_accepts_has_a_builder():
    """config.MODEL_LOSSES names the models (config and CLI choices, without importing Keras);
    model.BUILDERS builds them: the same names, in the same order."""
    assert list(model.BUILDERS) == list(MODEL_LOSSES)
