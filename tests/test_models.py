"""Every registered model: shapes, pixel range, loss terms, gradients, input checks, rebuilds.

Parametrised over `aezoo.models.MODELS`, so a model is tested here the moment it is registered.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import Tensor, nn

from aezoo.config import to_dict
from aezoo.errors import UsageError
from aezoo.models import MODELS, Terms, build, build_from_config, count_parameters, preset

NAMES = sorted(MODELS)
BATCH = 6


def inputs(model: nn.Module, batch: int = BATCH, seed: int = 0) -> tuple[Tensor, Tensor | None]:
    """Random images in [0, 1] of the model's shape, and labels when the model is conditional."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand((batch, *model.config.image_shape), generator=generator)
    y = torch.arange(batch) % model.num_classes if model.num_classes else None
    return x, y


def fresh(name: str, **options: object) -> nn.Module:
    torch.manual_seed(0)
    return build(name, **options)


@pytest.mark.parametrize("name", NAMES)
def test_shapes(name: str) -> None:
    model = fresh(name).eval()
    x, y = inputs(model)
    assert x.shape == (BATCH, 1, 28, 28)
    z = model.encode(x, y)
    assert isinstance(z, Tensor) and z.is_floating_point() and z.shape[0] == BATCH
    assert model.decode_logits(z, y).shape == x.shape
    assert model.decode(z, y).shape == x.shape
    assert model(x, y).shape == x.shape


@pytest.mark.parametrize("name", NAMES)
def test_reconstruction_is_deterministic_in_eval_mode(name: str) -> None:
    model = fresh(name).eval()
    x, y = inputs(model)
    with torch.no_grad():
        assert torch.equal(model(x, y), model(x, y))
        assert torch.equal(model(x, y), model.decode(model.encode(x, y), y))


@pytest.mark.parametrize("name", NAMES)
def test_decode_gives_pixel_values(name: str) -> None:
    model = fresh(name).eval()
    x, y = inputs(model)
    with torch.no_grad():
        z = model.encode(x, y)
        for scale in (1.0, 100.0):  # far-out latents saturate the sigmoid, never leave [0, 1]
            pixels = model.decode(z * scale, y)
            assert torch.isfinite(pixels).all()
            assert pixels.min() >= 0.0 and pixels.max() <= 1.0
            logits = model.decode_logits(z * scale, y)
            torch.testing.assert_close(pixels, torch.sigmoid(logits), rtol=0, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_loss_terms(name: str) -> None:
    model = fresh(name).train()
    x, y = inputs(model)
    terms = model.loss(x, y)
    assert isinstance(terms, Terms)
    assert "recon" in terms and terms.weights.get("recon") == 1.0
    assert set(terms.weights) <= set(terms)
    for key, value in terms.items():
        assert isinstance(value, Tensor) and value.dim() == 0, key
        assert torch.isfinite(value), key
    total = terms.total
    assert total.dim() == 0 and torch.isfinite(total)
    expected = sum(float(terms[k].detach()) * w for k, w in terms.weights.items())
    assert float(total.detach()) == pytest.approx(expected, rel=1e-6)
    # A denoising input changes what the encoder sees, not the shape of the result.
    noisy = (x + 0.3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    assert set(model.loss(x, y, noisy)) == set(terms)


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_every_parameter(name: str) -> None:
    model = fresh(name).train()
    x, y = inputs(model, batch=16)
    model.loss(x, y).total.backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert trainable
    for param_name, param in trainable:
        assert param.grad is not None, f"{param_name} gets no gradient"
        assert torch.isfinite(param.grad).all(), param_name
        assert param.grad.abs().sum() > 0, f"{param_name} gets an all-zero gradient"


@pytest.mark.parametrize("name", NAMES)
def test_conditional_models_need_labels(name: str) -> None:
    model = fresh(name)
    x, _ = inputs(model)
    if not model.num_classes:
        pytest.skip(f"{name} is not conditional")
    with pytest.raises(UsageError, match="label"):
        model.loss(x)
    with pytest.raises(UsageError, match=rf"0\.\.{model.num_classes - 1}"):
        model.loss(x, torch.full((BATCH,), model.num_classes))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    "bad_shape",
    [(BATCH, 1, 27, 27), (BATCH, 3, 28, 28), (BATCH, 784), (1, 28, 28)],
    ids=["27x27", "3-channels", "flat", "no-batch"],
)
def test_wrong_image_shape_is_a_usage_error(name: str, bad_shape: tuple[int, ...]) -> None:
    model = fresh(name)
    _, y = inputs(model)
    x = torch.rand(bad_shape)
    for call in (lambda: model.encode(x, y), lambda: model.loss(x, y), lambda: model(x, y)):
        with pytest.raises(UsageError) as err:
            call()
        message = str(err.value)
        assert "expected" in message and "1, 28, 28" in message  # what was expected
        assert str(tuple(bad_shape)) in message  # and what came


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64])
def test_integer_images_are_a_usage_error(name: str, dtype: torch.dtype) -> None:
    model = fresh(name)
    x, y = inputs(model)
    pixels = (x * 255).to(dtype)
    for call in (lambda: model.encode(pixels, y), lambda: model.loss(pixels, y)):
        with pytest.raises(UsageError, match="float") as err:
            call()
        assert str(dtype) in str(err.value)


@pytest.mark.parametrize("name", NAMES)
def test_wrong_latent_width_is_a_usage_error(name: str) -> None:
    model = fresh(name).eval()
    x, y = inputs(model)
    with torch.no_grad():
        z = model.encode(x, y)
    good = tuple(z.shape[1:])
    for shape in [
        (BATCH, good[0] + 1, *good[1:]),
        (BATCH, good[0] - 1, *good[1:]),
        (BATCH, *good, 1),
        (BATCH,),
    ]:
        bad = torch.zeros(shape)
        for call in (model.decode, model.decode_logits):
            with pytest.raises(UsageError) as err:
                call(bad, y)
            message = str(err.value)
            assert f"(B, {', '.join(map(str, good))})" in message, message  # expected
            assert str(tuple(shape)) in message, message  # got


@pytest.mark.parametrize("name", NAMES)
def test_rebuild_from_config(name: str) -> None:
    config = preset(name).make_config()
    model = build(name)
    again = build_from_config(name, to_dict(config))
    assert type(again) is type(model)
    assert again.config == config
    assert count_parameters(again) == count_parameters(model) > 0
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in again.state_dict().items()} == shapes


@pytest.mark.parametrize("name", NAMES)
def test_preset_options_are_applied(name: str) -> None:
    p = MODELS[name]
    assert build(name).config == p.make_config()
    for key, value in p.options.items():
        assert getattr(p.make_config(), key) == value
    assert isinstance(build(name), p.model)
    assert p.summary and "\n" not in p.summary


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    "image_shape", [(1, 28, 28), (3, 32, 32), (1, 20, 20), (1, 20, 28), (2, 13, 9)]
)
def test_decoder_hits_the_input_size(name: str, image_shape: tuple[int, int, int]) -> None:
    model = fresh(name, image_shape=image_shape).eval()
    x, y = inputs(model, batch=2)
    with torch.no_grad():
        assert model(x, y).shape == (2, *image_shape)
    assert torch.isfinite(model.loss(x, y).total)


@pytest.mark.parametrize("name", NAMES)
def test_sample(name: str) -> None:
    model = fresh(name).eval()
    if not hasattr(model, "sample"):
        pytest.skip(f"{name} is not generative")
    first = model.sample(5, generator=torch.Generator().manual_seed(3))
    again = model.sample(5, generator=torch.Generator().manual_seed(3))
    assert first.shape == (5, *model.config.image_shape)
    assert first.min() >= 0.0 and first.max() <= 1.0
    assert torch.equal(first, again)


def test_dense_ae_parameter_count() -> None:
    # 784-256-128-32 and back: Σ (in + 1) · out over the six linear layers.
    sizes = [784, 256, 128, 32, 128, 256, 784]
    expected = sum((a + 1) * b for a, b in itertools.pairwise(sizes))
    assert count_parameters(build("dense-ae")) == expected == 476_720


@pytest.mark.parametrize("loss", ["mse", "bce"])
def test_ae_recon_is_the_per_image_sum(loss: str) -> None:
    model = fresh("dense-ae", loss=loss).eval()
    x, _ = inputs(model)
    logits = model.decode_logits(model.encode(x))
    if loss == "mse":
        per_pixel = (torch.sigmoid(logits) - x).square()
    else:
        per_pixel = nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none")
    expected = per_pixel.flatten(1).sum(1).mean()
    torch.testing.assert_close(model.loss(x).total, expected)
    assert model.loss(x)["recon"] == model.loss(x).total


@pytest.mark.parametrize("arch", ["conv", "upsample"])
def test_conv_ae_needs_a_stage(arch: str) -> None:
    with pytest.raises(UsageError, match=r"^channels: "):
        build("conv-ae", arch=arch, channels=())


def test_linear_dense_ae_has_no_hidden_layer() -> None:
    model = build("dense-ae", hidden=(), latent_dim=8)
    assert count_parameters(model) == (784 + 1) * 8 + (8 + 1) * 784


def test_encoder_dropout_only_in_training() -> None:
    model = fresh("dense-ae", dropout=0.5)
    x, _ = inputs(model)
    model.train()
    assert not torch.equal(model.encode(x), model.encode(x))
    model.eval()
    assert torch.equal(model.encode(x), model.encode(x))


def test_unknown_model_lists_known_ones() -> None:
    with pytest.raises(UsageError, match="unknown model 'densse-ae'") as err:
        build("densse-ae")
    assert all(name in str(err.value) for name in MODELS)


def test_build_rejects_options_the_model_lacks() -> None:
    with pytest.raises(UsageError, match="'codebook_sise' does not apply"):
        build("dense-ae", codebook_sise=3)


def scalar(value: float) -> Tensor:
    return torch.tensor(value, dtype=torch.float64)


def test_terms_total_and_reweight() -> None:
    terms = Terms(
        {"recon": scalar(3.0), "kl": scalar(5.0), "perplexity": scalar(40.0)},
        weights={"recon": 1.0, "kl": 2.0},
    )
    assert float(terms.total) == 13.0  # 1·3 + 2·5; the unweighted diagnostic stays out
    half = terms.reweight("kl", 0.5)
    assert float(half.total) == 8.0 and half.weights == {"recon": 1.0, "kl": 1.0}
    assert float(terms.total) == 13.0 and terms.weights["kl"] == 2.0  # the original is untouched
    assert float(terms.reweight("kl", 0.0).total) == 3.0
    assert float(terms.reweight("codebook", 0.0).total) == 13.0  # no such term: no-op
    assert dict(half) == dict(terms)  # the values themselves are shared, not rescaled
    assert float(terms.reweight("kl", 0.5).reweight("kl", 0.5).total) == 3.0 + 2.0 * 0.25 * 5.0


def test_terms_gradient_follows_weights() -> None:
    a = torch.tensor(2.0, requires_grad=True)
    b = torch.tensor(3.0, requires_grad=True)
    Terms({"recon": a * a, "kl": b}, {"recon": 1.0, "kl": 0.25}).total.backward()
    assert float(a.grad) == 4.0 and float(b.grad) == 0.25


def test_terms_refuse_weights_for_missing_terms() -> None:
    with pytest.raises(KeyError, match="kl"):
        Terms({"recon": scalar(1.0)}, {"recon": 1.0, "kl": 1.0})


def test_float64_images_are_accepted() -> None:
    model = fresh("dense-ae").double().eval()
    x = torch.rand(2, 1, 28, 28, dtype=torch.float64)
    assert model(x).dtype == torch.float64
    assert math.isfinite(float(model.loss(x).total.detach()))
