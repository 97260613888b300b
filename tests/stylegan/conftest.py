"""StyleGAN tests: tiny models on CPU; fixture files are read in place from ../shared/fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="the StyleGAN renderer needs the 'stylegan' extra (torch)")


@pytest.fixture(scope="session")
def stylegan_dir(fixtures_dir: Path) -> Path:
    path = fixtures_dir / "stylegan2"
    if not (path / "stylegan2_tiny_g_ema.pt").is_file():
        pytest.fail(f"StyleGAN fixture folder incomplete: {path}")
    return path


@pytest.fixture(scope="session")
def tiny_checkpoint(stylegan_dir: Path) -> Path:
    return stylegan_dir / "stylegan2_tiny_g_ema.pt"


@pytest.fixture(scope="session")
def tiny(tiny_checkpoint: Path):
    """(generator, latent_avg) of the 32 px fixture model; treat as read-only."""
    from lookalike.stylegan.generator import load_generator

    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    return load_generator(tiny_checkpoint, "cpu")


@pytest.fixture(scope="session")
def vgg_file(tmp_path_factory) -> Path:
    """A randomly initialised VGG16 saved in torchvision's full ``vgg16`` state_dict layout."""
    from lookalike.stylegan.perceptual import VGG16Features

    torch.manual_seed(1234)
    model = VGG16Features()
    state = {f"features.{k}": v for k, v in model.features.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(2, 2)     # ignored, as in a real torchvision file
    path = tmp_path_factory.mktemp("vgg") / "vgg16.pth"
    torch.save(state, path)
    return path


@pytest.fixture(scope="session")
def vgg(vgg_file: Path):
    from lookalike.stylegan.perceptual import VGG16Features

    return VGG16Features.from_file(vgg_file)


@pytest.fixture(scope="session")
def known_latent(tiny):
    """A W+ (one W repeated) between latent_avg and a random mapped z, and its image [3, 32, 32]."""
    g, latent_avg = tiny
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        w = g.get_latent(torch.randn(1, g.style_dim, generator=gen))
        w_true = (latent_avg + 0.5 * (w - latent_avg)).repeat(g.n_latent, 1)   # [n_latent, style_dim]
        image = g.synthesis(w_true[None])[0]
    return w_true, image
