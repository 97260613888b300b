"""Optional StyleGAN2 renderer: inversion into W+, latent morphs and a smile direction.

Needs the ``stylegan`` extra (torch) and files the operator supplies; nothing is downloaded.
Import the submodules directly (``lookalike.stylegan.generator`` ...): importing this package
alone does not import torch, so the classical renderer never pays for it.

- ``generator``: ``Generator``, ``load_generator(path, device) -> (Generator, latent_avg)``
- ``perceptual``: ``VGG16Features.from_file(path)`` (LPIPS-style distance)
- ``inversion``: ``invert`` / ``invert_many`` -> ``InversionResult``, ``load_encoder``, ``encode``
- ``render``: ``morph_frames``, ``smile_frames`` -> uint8 frames; ``timeline``, ``soft_mask``
- ``directions``: ``fit_direction``, ``fit_boundary``, ``load_direction``
- ``latents``: per-job bytes, ``LatentCache`` for celebrity latents
- ``models``: ``require_files`` (start-up check), ``load_models``
- ``cli``: ``directions_app`` (``lookalike directions fit``)
"""
