"""realdata: surgical fine-tuning of CNN backbones on shifted targets (PyTorch).

Modules: :mod:`realdata.tasks` (task registry), :mod:`realdata.data` (dataset interface, readers,
the built-in synthetic task), :mod:`realdata.models` (backbones + block maps + checkpoints),
:mod:`realdata.surgery` (what trains; Auto-RGN, Auto-SNR), :mod:`realdata.train` (protocol,
prefix caching), :mod:`realdata.benchmark` (``python -m realdata.benchmark``),
:mod:`realdata.summary`, :mod:`realdata.bench` (speed measurements). Importing this package does
not import torch; import the submodules.
"""
