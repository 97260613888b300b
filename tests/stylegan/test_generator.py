"""The generator reproduces the rosinality port's golden outputs and loads config-f layouts strictly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lookalike.errors import ConfigError
from lookalike.stylegan.generator import (
    CHECKPOINT_SETTING, Generator, generator_from_state_dict, infer_config, load_generator, upfirdn2d)

TOL = 1e-4


@pytest.fixture(scope="module")
def golden(stylegan_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(stylegan_dir / "golden.pt", map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def cases(stylegan_dir: Path) -> dict[str, dict]:
    return {c["name"]: c for c in json.loads((stylegan_dir / "golden.json").read_text())["cases"]}


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a - b).abs().max())


def test_tiny_architecture_is_inferred_from_shapes(tiny) -> None:
    g, latent_avg = tiny
    assert (g.size, g.style_dim, g.n_mlp, g.n_latent, g.num_layers) == (32, 64, 2, 8, 7)
    assert g.channels == {4: 32, 8: 32, 16: 32, 32: 32}          # not the config-f table
    assert latent_avg.shape == (1, 64)


@torch.no_grad()
def test_golden_case1_z_no_truncation(tiny, golden, cases) -> None:
    g, _ = tiny
    assert cases["case1_z_no_truncation"]["args"]["randomize_noise"] is False
    img, latent = g([golden["z"]], randomize_noise=False, truncation=1, return_latents=True)
    assert _max_diff(img, golden["case1_img"]) < TOL
    assert _max_diff(latent, golden["case1_latent"]) < TOL


@torch.no_grad()
def test_golden_case2_truncation(tiny, golden, cases) -> None:
    g, latent_avg = tiny
    args = cases["case2_z_truncation_0.7"]["args"]
    # the checkpoint's latent_avg is the golden mean_latent
    assert _max_diff(latent_avg, golden["mean_latent"]) < TOL
    img, latent = g([golden["z"]], randomize_noise=False, truncation=args["truncation"],
                    truncation_latent=latent_avg, return_latents=True)
    assert _max_diff(img, golden["case2_img"]) < TOL
    assert _max_diff(latent, golden["case2_latent"]) < TOL


@torch.no_grad()
def test_golden_case3_wplus_input(tiny, golden) -> None:
    g, _ = tiny
    img, latent = g([golden["wplus"]], input_is_latent=True, randomize_noise=False)
    assert latent is None
    assert _max_diff(img, golden["case3_img"]) < TOL
    # the project's own entry point gives the same image
    assert _max_diff(g.synthesis(golden["wplus"]), golden["case3_img"]) < TOL


@torch.no_grad()
def test_golden_case4_mapping_network(tiny, golden) -> None:
    g, _ = tiny
    assert _max_diff(g.style(golden["z"]), golden["case4_w"]) < TOL
    assert _max_diff(g.get_latent(golden["z"]), golden["case4_w"]) < TOL


@torch.no_grad()
def test_golden_case5_style_mixing(tiny, golden, cases) -> None:
    g, _ = tiny
    inject = cases["case5_style_mixing_inject_3"]["args"]["inject_index"]
    img, latent = g([golden["z"], golden["z_mix"]], randomize_noise=False, inject_index=inject,
                    truncation=1, return_latents=True)
    assert _max_diff(img, golden["case5_img"]) < TOL
    assert _max_diff(latent, golden["case5_latent"]) < TOL


@torch.no_grad()
def test_noise_conventions(tiny, golden) -> None:
    g, _ = tiny
    fixed = g.synthesis(golden["wplus"])
    assert _max_diff(fixed, g.synthesis(golden["wplus"], noise=g.fixed_noise())) == 0
    # randomize_noise=True draws fresh noise: output differs from the fixed-noise golden image
    img, _ = g([golden["wplus"]], input_is_latent=True, randomize_noise=True)
    assert _max_diff(img, golden["case3_img"]) > 1e-3


def test_upfirdn2d_matches_direct_definition() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 5, 6)
    k = torch.rand(4, 4)
    out = upfirdn2d(x, k, up=2, pad=(2, 1))
    # reference: zero-insert, pad, true 2-D convolution written out as loops
    up = torch.zeros(2, 3, 10, 12)
    up[:, :, ::2, ::2] = x
    padded = torch.nn.functional.pad(up, [2, 1, 2, 1])
    ref = torch.zeros(2, 3, padded.shape[2] - 3, padded.shape[3] - 3)
    for i in range(ref.shape[2]):
        for j in range(ref.shape[3]):
            patch = padded[:, :, i:i + 4, j:j + 4]
            ref[:, :, i, j] = (patch * torch.flip(k, [0, 1])).sum((2, 3))
    assert out.shape == (2, 3, 10, 12)
    assert torch.allclose(out, ref, atol=1e-5)


def _random_state_dict(keys: list) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {k: torch.randn(*shape, generator=gen) for k, shape in keys}


@pytest.mark.parametrize("name,size,n_latent", [
    ("config_f_1024_keys.json", 1024, 18),
    ("config_512_keys.json", 512, 16),
    ("config_256_keys.json", 256, 14),
])
def test_config_key_lists_load_strictly(stylegan_dir: Path, name: str, size: int, n_latent: int) -> None:
    spec = json.loads((stylegan_dir / name).read_text())
    keys = spec["keys"]
    state = _random_state_dict(keys)

    cfg = infer_config(state)
    assert cfg.size == size == spec["config"]["size"]
    assert cfg.style_dim == spec["config"]["style_dim"]
    assert cfg.n_mlp == spec["config"]["n_mlp"]
    assert cfg.n_latent == n_latent == spec["n_latent"]
    assert cfg.channels == {int(r): c for r, c in spec["channels"].items() if int(r) <= size}

    g = generator_from_state_dict(state)          # load_state_dict(strict=True) inside
    mine = [[k, list(v.shape)] for k, v in g.state_dict().items()]
    assert mine == [[k, list(s)] for k, s in keys]                      # same keys, shapes, order
    assert sum(p.numel() for p in g.parameters()) == spec["total_parameter_count"]
    assert {k for k, _ in g.named_buffers()} == set(spec["buffer_keys"])
    assert g.num_layers == spec["num_layers_noise"]
    for k in ("convs.3.conv.weight", "to_rgbs.1.conv.modulation.bias", "noises.noise_5"):
        assert torch.equal(g.state_dict()[k], state[k])


def test_256_forward_shapes(stylegan_dir: Path) -> None:
    spec = json.loads((stylegan_dir / "config_256_keys.json").read_text())
    g = generator_from_state_dict(_random_state_dict(spec["keys"])).eval()
    with torch.no_grad():
        img = g.synthesis(torch.randn(1, 14, 512))
    assert img.shape == (1, 3, 256, 256) and torch.isfinite(img).all()


def test_strict_loading_rejects_changed_layouts(stylegan_dir: Path, tmp_path: Path) -> None:
    spec = json.loads((stylegan_dir / "config_256_keys.json").read_text())
    good = {k: torch.zeros(s) for k, s in spec["keys"]}

    missing = dict(good)
    del missing["convs.5.noise.weight"]
    extra = dict(good, **{"convs.5.extra": torch.zeros(1)})
    wrong = dict(good, **{"convs.4.conv.modulation.weight": torch.zeros(512, 500)})
    for bad, needle in ((missing, "convs.5.noise.weight"), (extra, "convs.5.extra"),
                        (wrong, "convs.4.conv.modulation.weight")):
        path = tmp_path / "bad.pt"
        torch.save({"g_ema": bad, "latent_avg": torch.zeros(1, 512)}, path)
        with pytest.raises(ConfigError) as err:
            load_generator(path)
        assert needle in str(err.value) and str(path) in str(err.value)


def test_missing_checkpoint_names_path_and_setting(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "stylegan2-ffhq-config-f.pt"
    with pytest.raises(ConfigError) as err:
        load_generator(path)
    assert str(path) in str(err.value)
    assert CHECKPOINT_SETTING in str(err.value)
    assert err.value.code == "config"


def test_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "d.pt"
    torch.save({"d": {"x": torch.zeros(1)}}, path)
    with pytest.raises(ConfigError, match="no 'g_ema'"):
        load_generator(path)
    path.write_bytes(b"not a torch file")
    with pytest.raises(ConfigError, match="not a readable PyTorch checkpoint"):
        load_generator(path)


def test_latent_avg_variants(tiny_checkpoint: Path, tmp_path: Path, tiny) -> None:
    ckpt = torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)
    # converted official checkpoints store latent_avg as [style_dim]
    flat = tmp_path / "flat.pt"
    torch.save({"g_ema": ckpt["g_ema"], "latent_avg": ckpt["latent_avg"].reshape(-1)}, flat)
    _, avg = load_generator(flat)
    assert torch.equal(avg, ckpt["latent_avg"])
    # training checkpoints of the port have none: the mean W is computed
    bare = tmp_path / "bare.pt"
    torch.save({"g_ema": ckpt["g_ema"]}, bare)
    _, avg = load_generator(bare)
    assert avg.shape == (1, 64)
    assert float((avg - ckpt["latent_avg"]).norm()) < 0.1 * float(ckpt["latent_avg"].norm())


def test_loaded_generator_is_frozen(tiny) -> None:
    g, _ = tiny
    assert not g.training
    assert not any(p.requires_grad for p in g.parameters())


def test_bad_latent_shape_is_rejected(tiny) -> None:
    g, _ = tiny
    with pytest.raises(ValueError, match=r"\[B, 8, 64\]"):
        g.synthesis(torch.zeros(1, 7, 64))


def test_generator_rejects_bad_size() -> None:
    with pytest.raises(ValueError):
        Generator(48, 64, 2)
