"""The built-in task table: every task the package ships, in one place.

Readers (``realdata/data/*.py``) are pure ``LoadRequest -> TargetSplits`` functions: they import no
registry, train nothing and write no run store. This table pairs each reader with its backbone,
shift level and protocol presets. :mod:`realdata.tasks` imports this module explicitly on first
use; an error raised while importing a reader surfaces as that error.

Grids: every ResNet preset uses at least the official grid {1e-1 .. 1e-5}; ``--quick`` presets
shrink epochs, examples and variants, never the grid (a grid without 1e-4 and 1e-5 left ``all`` at
the grid's smallest lr in most runs, biasing the comparison against it). The synthetic task adds
1.0 on top, because head tuning on its small target sets chose 1e-1 (the official top) most often.
The ViT tasks keep their own grids: ``synthetic-vit`` :data:`realdata.data.synthetic_vit.VIT_LRS`,
``fmow`` (CLIP ViT-B/16) the official grid, shrunk to {1e-4, 1e-5} with ``--quick``.
"""

from __future__ import annotations

import functools

from realdata.data.breeds import load_entity30, load_living17
from realdata.data.cifar import NUM_CLASSES as CIFAR_CLASSES
from realdata.data.cifar import load_cifar10c, load_cifarflip
from realdata.data.corruptions import ALL_CORRUPTIONS
from realdata.data.fmow import FMOW_CATEGORIES, load_fmow
from realdata.data.imagenet_c import load_imagenetc
from realdata.data.layout import LAYOUTS
from realdata.data.synthetic import BACKBONE_KWARGS as SYNTHETIC_BACKBONE
from realdata.data.synthetic import LEVELS as SYNTHETIC_LEVELS
from realdata.data.synthetic import NUM_CLASSES as SYNTHETIC_CLASSES
from realdata.data.synthetic import QUICK_CORRUPTIONS as SYNTHETIC_QUICK_CORRUPTIONS
from realdata.data.synthetic import READER_VERSION as SYNTHETIC_READER_VERSION
from realdata.data.synthetic import VARIANTS as SYNTHETIC_VARIANTS
from realdata.data.synthetic import load_synthetic
from realdata.data.synthetic_vit import TINY_VIT, VIT_LRS
from realdata.data.wilds import load_camelyon17, load_celeba, load_waterbirds
from realdata.experiments.noise_in_block import (
    NOISE_PROTOCOLS,
    load_cifar10_source,
    load_synthetic_source,
    noise_task,
)
from realdata.pretrain import prepare_synthetic_source
from realdata.tasks import DEFAULT_LRS, Protocol, TaskSpec

__all__ = ["BUILTIN_TASKS", "SYNTHETIC_LRS"]

#: The synthetic task's grid: the official one plus 1.0.
SYNTHETIC_LRS: tuple[float, ...] = (1.0, *DEFAULT_LRS)


_CIFAR = Protocol(epochs=15, train_n=1000, val_per_class=10, test_per_class=90, severity=5,
                  image_size=32)
_CIFAR_QUICK = Protocol(epochs=3, train_n=100, val_per_class=10, test_per_class=20, severity=5,
                        image_size=32)
_IMAGENET = Protocol(epochs=10, train_n=1000, val_per_class=10, test_per_class=None,
                     image_size=224)
_IMAGENET_QUICK = Protocol(epochs=2, train_n=170, val_per_class=5, test_per_class=10,
                           image_size=224)
_SPURIOUS = Protocol(epochs=10, train_n=400, val_per_class=10, test_per_class=None, image_size=224)
_SPURIOUS_QUICK = Protocol(epochs=2, train_n=40, val_per_class=5, test_per_class=20,
                           image_size=224)
_QUICK_CORRUPTIONS = ("gaussian_noise", "defocus_blur", "contrast")
#: Synthetic --quick targets: one corruption per family, the channel permutation, feature, output.
_SYNTHETIC_QUICK = (*SYNTHETIC_QUICK_CORRUPTIONS, "input-channels", "feature", "output")

_SYNTHETIC = TaskSpec(
    name="synthetic", shift_level="input", backbone="resnet26",
    num_classes=SYNTHETIC_CLASSES, load=load_synthetic, variants=SYNTHETIC_VARIANTS,
    protocol=Protocol(epochs=15, lrs=SYNTHETIC_LRS, train_n=500, val_per_class=10,
                      test_per_class=100),
    quick_protocol=Protocol(epochs=5, lrs=SYNTHETIC_LRS, train_n=100, val_per_class=10,
                            test_per_class=50),
    quick_variants=_SYNTHETIC_QUICK,
    layout="(none: images are generated; no --data-root needed)",
    backbone_kwargs=SYNTHETIC_BACKBONE, needs_data=False,
    description="built-in procedural images: 15 CIFAR-10-C corruptions and a channel permutation "
                "(input), new shape styles (feature), a label derangement (output); offline",
    variant_levels=SYNTHETIC_LEVELS,  # type: ignore[arg-type]
    prepare_source=prepare_synthetic_source,
    # a subpopulation's style has a fixed shear whose sign a flip reverses
    source_flips=False,
    reader_version=SYNTHETIC_READER_VERSION,
)
_CIFAR10C = TaskSpec(
    name="cifar10c", shift_level="input", backbone="resnet26", num_classes=CIFAR_CLASSES,
    load=load_cifar10c, variants=ALL_CORRUPTIONS, protocol=_CIFAR,
    quick_protocol=_CIFAR_QUICK, quick_variants=_QUICK_CORRUPTIONS,
    layout=LAYOUTS["cifar10c"],
    description="CIFAR-10 -> CIFAR-10-C (15 + 4 corruptions, severity 5); input-level shift",
)

BUILTIN_TASKS: tuple[TaskSpec, ...] = (
    _SYNTHETIC,
    TaskSpec(
        name="synthetic-vit", shift_level="input", backbone="vit_b16",
        num_classes=SYNTHETIC_CLASSES, load=load_synthetic, variants=SYNTHETIC_VARIANTS,
        protocol=Protocol(epochs=15, lrs=VIT_LRS, train_n=500, val_per_class=10,
                          test_per_class=100),
        quick_protocol=Protocol(epochs=5, lrs=VIT_LRS, train_n=100, val_per_class=10,
                                test_per_class=50),
        quick_variants=_SYNTHETIC_QUICK,
        layout="(none: images are generated; no --data-root needed)",
        backbone_kwargs=TINY_VIT, needs_data=False,
        description="built-in procedural images with a tiny ViT source model, offline",
        variant_levels=SYNTHETIC_LEVELS,  # type: ignore[arg-type]
        prepare_source=functools.partial(prepare_synthetic_source, backbone="vit_b16",
                                         backbone_kwargs=TINY_VIT),
        source_flips=False, reader_version=SYNTHETIC_READER_VERSION,
    ),
    _CIFAR10C,
    TaskSpec(
        name="cifarflip", shift_level="output", backbone="resnet26", num_classes=CIFAR_CLASSES,
        load=load_cifarflip, protocol=_CIFAR, quick_protocol=_CIFAR_QUICK,
        layout=LAYOUTS["cifarflip"],
        description="CIFAR-10 -> CIFAR-10 with labels 9 - y; output-level shift",
    ),
    TaskSpec(
        name="imagenetc", shift_level="input", backbone="resnet50", num_classes=1000,
        load=load_imagenetc, variants=ALL_CORRUPTIONS,
        protocol=Protocol(epochs=10, train_n=1000, val_per_class=10, test_per_class=10,
                          severity=5, image_size=224),
        quick_protocol=Protocol(epochs=2, train_n=1000, val_per_class=2, test_per_class=2,
                                severity=5, image_size=224),
        quick_variants=_QUICK_CORRUPTIONS, layout=LAYOUTS["imagenetc"],
        description="ImageNet -> ImageNet-C (15 + 4 corruptions, severity 5); input-level shift",
    ),
    *(TaskSpec(
        name=name, shift_level="feature", backbone="resnet50", num_classes=k, load=load,
        protocol=_IMAGENET, quick_protocol=_IMAGENET_QUICK, layout=LAYOUTS[name],
        description=f"BREEDS {name}: source -> target subpopulations; feature-level shift",
    ) for name, load, k in (("living17", load_living17, 17), ("entity30", load_entity30, 30))),
    *(TaskSpec(
        name=name, shift_level="output", backbone="resnet50", num_classes=2, load=load,
        protocol=_SPURIOUS, quick_protocol=_SPURIOUS_QUICK, metric="worst_group",
        layout=LAYOUTS[name], description=f"{what} -> group-balanced target",
    ) for name, load, what in (
        ("waterbirds", load_waterbirds, "Waterbirds: spurious training distribution"),
        ("celeba", load_celeba,
         "CelebA (Blond_Hair, groups by Male): spurious training distribution"))),
    TaskSpec(
        name="camelyon17", shift_level="natural", backbone="resnet50", num_classes=2,
        load=load_camelyon17,
        protocol=Protocol(epochs=10, train_n=1000, val_per_class=10, test_per_class=500,
                          image_size=96),
        quick_protocol=Protocol(epochs=2, train_n=100, val_per_class=10, test_per_class=50,
                                image_size=96),
        layout=LAYOUTS["camelyon17"],
        description="Camelyon17: training hospitals -> held-out hospital (center 2)",
    ),
    TaskSpec(
        name="fmow", shift_level="natural", backbone="clip_vit_b16",
        num_classes=len(FMOW_CATEGORIES), load=load_fmow,
        protocol=Protocol(epochs=10, train_n=620, val_per_class=5, test_per_class=None,
                          image_size=224),
        quick_protocol=Protocol(epochs=2, lrs=(1e-4, 1e-5), train_n=124, val_per_class=2,
                                test_per_class=5, image_size=224),
        metric="worst_group", layout=LAYOUTS["fmow"],
        description="FMoW: satellite images before 2013 -> OOD years (WILDS), worst-region "
                    "accuracy",
    ),
    # noise in one block of a source model, tuned on source data (the controlled experiment)
    noise_task("noise-in-block", _SYNTHETIC, load_synthetic_source,
               protocol=NOISE_PROTOCOLS["noise-in-block"][0],
               quick_protocol=NOISE_PROTOCOLS["noise-in-block"][1],
               description="noise in one block of the synthetic source model, tuned on "
                           "synthetic source data (offline)"),
    noise_task("noise-in-block-cifar10", _CIFAR10C, load_cifar10_source,
               protocol=NOISE_PROTOCOLS["noise-in-block-cifar10"][0],
               quick_protocol=NOISE_PROTOCOLS["noise-in-block-cifar10"][1],
               description="noise in one block of a CIFAR-10 model, tuned on CIFAR-10 test "
                           "images"),
)
