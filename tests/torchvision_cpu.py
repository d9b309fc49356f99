"""The real torchvision, for the PyTorch comparisons only (never a dependency of tinyconv or its tests).

PyPI's torchvision wheel registers fake kernels for its compiled operators when imported, and that registration
fails next to the CPU build of torch ("operator torchvision::nms does not exist"); the transforms and data sets the
comparisons use need none of those operators, so the registration is skipped.
"""
import importlib
import sys
import types


def import_real_torchvision():
    """The torchvision module, or None when it is not installed."""
    try:
        import torchvision
    except ImportError:
        return None
    except RuntimeError:
        for name in [m for m in sys.modules if m.startswith("torchvision")]:
            del sys.modules[name]
        sys.modules["torchvision._meta_registrations"] = types.ModuleType("torchvision._meta_registrations")
        return importlib.import_module("torchvision")
    return torchvision
