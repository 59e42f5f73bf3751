import numpy as np
import pytest
import torch

from medprobe.datasets import synthetic
from medprobe.encoders import create_encoder, get_spec, list_specs
from medprobe.errors import MedprobeError
from medprobe.features import extract


@pytest.fixture(scope="module")
def tiny():
    return synthetic("dermoscopy", 24, size=64)


@pytest.mark.parametrize("name", ["pixels", "handcrafted"])
def test_baselines_return_float32_of_the_spec_dimension(name, tiny):
    encoder = create_encoder(name)
    fs = extract(encoder, tiny, show_progress=False)
    assert fs.features.dtype == np.float32
    assert fs.features.shape == (len(tiny), encoder.spec.embed_dim)
    assert np.isfinite(fs.features).all()
    again = extract(create_encoder(name), tiny, show_progress=False)
    assert np.array_equal(fs.features, again.features)


def test_pixels_pca_is_fitted_on_train_only(tiny):
    encoder = create_encoder("pixels")
    extract(encoder, tiny, show_progress=False)
    n_train = sum(r.split == "train" for r in tiny)
    assert encoder.n_samples_ == n_train
    assert encoder.fingerprint() != create_encoder("pixels").fingerprint()


@pytest.mark.parametrize("n", [300, 3200])  # kept and decomposed / past D = 3072: scatter
def test_pixels_streamed_pca_equals_scikit_learn_on_all_images(n):
    """The fit streams batches (memory D^2 whatever the number of images) and gives
    scikit-learn's full-SVD PCA, signs included."""
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((n, 3, 32, 32)).astype(np.float32) ** 2)
    x[:, 0] += torch.linspace(0, 1, n)[:, None, None]  # a leading direction
    encoder = create_encoder("pixels").fit([x[i : i + 512] for i in range(0, n, 512)])
    assert encoder.n_samples_ == n
    flat = x.flatten(1).numpy().astype(np.float64)
    reference = PCA(n_components=64, svd_solver="full", random_state=0).fit(flat)
    ours, theirs = encoder.encode_images(x[:40]), reference.transform(flat[:40])
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-4 * np.abs(theirs).max())


def test_random_vit_is_a_real_architecture_and_seeded():
    spec = get_spec("random-vit")
    encoder = create_encoder(spec)
    # ViT-S/16: 12 blocks of width 384, 16x16 patches, 512-d projection head.
    assert len(encoder.module.blocks) == 12
    assert encoder.module.embed_dim == 384
    assert encoder.module.patch_embed.patch_size == (16, 16)
    assert encoder.module.head.out_features == 512
    batch = torch.rand(2, 3, 224, 224)
    first = encoder.encode_images(batch)
    assert first.shape == (2, 512) and first.dtype == np.float32
    assert np.array_equal(first, create_encoder(spec).encode_images(batch))
    reseeded = spec.model_copy(update={"options": {"seed": 1, "random_init": True}})
    assert not np.allclose(first, create_encoder(reseeded).encode_images(batch))


def test_random_vit_b16_has_the_vlm_tower_size():
    module = create_encoder("random-vit-b16").module
    assert sum(p.numel() for p in module.parameters()) == pytest.approx(86.2e6, rel=0.01)


def test_seeding_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    create_encoder("random-vit")
    assert torch.equal(torch.rand(3), expected)


def test_registry_lookup():
    assert get_spec("RANDOM-VIT-S16").name == "random-vit"
    assert get_spec("classical").name == "handcrafted"
    assert {s.name for s in list_specs("baseline")} >= {"pixels", "handcrafted", "random-vit"}
    with pytest.raises(MedprobeError, match="unknown encoder 'nope'"):
        get_spec("nope")


def test_preprocessing_follows_the_spec():
    from PIL import Image

    encoder = create_encoder("random-vit")
    image = Image.new("RGB", (300, 200), (255, 0, 0))
    tensor = encoder.preprocess(image)
    assert tensor.shape == (3, 224, 224)
    mean, std = encoder.spec.preprocessing.mean, encoder.spec.preprocessing.std
    expected_red = (1 - mean[0]) / std[0]
    assert tensor[0].mean().item() == pytest.approx(expected_red, abs=1e-4)
    assert tensor[1].mean().item() == pytest.approx(-mean[1] / std[1], abs=1e-4)
