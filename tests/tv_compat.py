"""The tests import torchvision through the converter's workaround for a torchvision whose
compiled ops do not load (engine/convert/tv_compat.py).

    from tv_compat import import_torchvision
    torchvision = import_torchvision()          # or None when torch/torchvision are missing
"""

from engine.convert.tv_compat import import_torchvision  # noqa: F401
