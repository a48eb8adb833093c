"""The timm entry points `arlif_<model>`, registered when timm is imported, not before.

`import arlif` calls `install()`: if timm is already loaded, the models are registered at
once; otherwise a finder on `sys.meta_path` waits for timm's own import and registers them
right after it.  So `import arlif.neurons` never pays for importing timm (about 4 s), and
`timm.create_model("arlif_resnet18", ...)` works whichever of timm and arlif came first.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys

_registered = False


def register() -> None:
    """Expose every architecture of `arlif.models` to `timm.create_model("arlif_<name>", ...)` (once)."""
    global _registered
    if _registered:
        return
    _registered = True
    from timm.models import register_model

    from arlif.models import MODELS, create_model

    def entrypoint(name):
        def build(pretrained: bool = False, num_classes: int = 1000, in_chans: int = 3, img_size: int = 224,
                  **kwargs):
            if pretrained:
                raise ValueError("arlif models have no pretrained weights")
            for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
                kwargs.pop(key, None)
            return create_model(name, num_classes=num_classes, in_channels=in_chans, image_size=img_size, **kwargs)

        build.__name__ = f"arlif_{name}"
        build.__doc__ = f"Spiking {name} from arlif (multi-step; see arlif.models.create_model)."
        build.__module__ = "arlif.models"
        return build

    for name in MODELS:
        register_model(entrypoint(name))


class _AfterTimmImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: hands timm's own spec back with a loader step that registers afterwards."""

    def find_spec(self, name, path=None, target=None):
        if name != "timm":
            return None
        sys.meta_path.remove(self)  # once; the lookup below uses the other finders
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_register(module):
            exec_module(module)
            register()

        spec.loader.exec_module = exec_then_register
        return spec


def install() -> None:
    """Register now if timm is loaded, else as soon as it is."""
    if "timm" in sys.modules:
        register()
    elif not any(isinstance(f, _AfterTimmImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterTimmImport())
