"""Small hyperparameters for the big zoo specs beyond the notes, shared by the tests that run
every spec (tests/specs/test_zoo.py and through it tests/backends/test_own_init.py,
tests/passes/test_passes.py): their published sizes are counted, not run
(tests/specs/test_modern_zoo.py), so the suite stays fast on two cores."""

from __future__ import annotations

# Small images, and narrower/shallower where the spec takes widths and depths; no weight of
# the fully convolutional nets depends on the image size.
SMALL_HPARAMS: dict[str, dict] = {
    "r3d_18": {"size": 16},
    "unet": {"base": 4, "size": 188},
    "vit_b_16": {"size": 32, "dim": 48, "heads": 4, "mlp_dim": 96, "layers": 2},
    "convnext_tiny": {"size": 32, "dims": (8, 16, 24, 32), "depths": (1, 1, 2, 1)},
    "dcgan_generator": {"ngf": 8},
    "dcgan_discriminator": {"ndf": 8},
    "wavenet_tcn": {"layers": 3, "stacks": 2},
    "mobilenet_v2": {"size": 32},
    "mobilenet_v3_small": {"size": 32},
    "efficientnet_b0": {"size": 32},
}
