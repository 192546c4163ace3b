"""The one version of FlowMotion for Blender: the package's (pyproject reads it), the add-on's manifest
(build_addon.py writes it into each zip) and the backend's welcome all report this.

A module of its own, with nothing to import, so that the build of the add-on reads it without torch.
"""

__version__ = "0.1.0"
