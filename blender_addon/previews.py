"""A running take's live preview: one image per take in bpy.data.images, updated in place.

The backend sends a few of the take's frames, small, as the sampler predicts them at a step; the
add-on lays them side by side in one image (the take's first frame on the left), so the artist
sees the take's look and motion forming and can cancel early. The panel shows it as a large icon
(a custom preview with the same pixels: an image's own icon would be re-rendered by a job of
Blender's); the Image Editor shows the image at full size. Once the take lands, fails or is
cancelled its image and icon are removed. The image has no users, so a .blend never keeps it.
"""

from __future__ import annotations

import bpy
import bpy.utils.previews
import numpy as np

PREFIX = "FlowMotion Preview"

_icons = None
"""The add-on's custom previews (bpy.utils.previews), one per take showing a preview."""


def image_of(take):
    """The take's preview image, if it has one."""
    return bpy.data.images.get(take.preview_image) if take.preview_image else None


def rgba_strip(preview, pixels: bytes) -> np.ndarray:
    """The preview's frames side by side as Blender's pixels: float RGBA, bottom row first."""
    frames = np.frombuffer(pixels, np.uint8).reshape(preview.frame_count, preview.height, preview.width, 3)
    strip = np.concatenate(list(frames), axis=1)[::-1]
    rgba = np.ones((*strip.shape[:2], 4), np.float32)
    rgba[..., :3] = strip / 255.0
    return rgba


def show(take, preview, pixels: bytes) -> None:
    """Put the newest preview into the take's image, made on its first preview."""
    rgba = rgba_strip(preview, pixels)
    height, width = rgba.shape[:2]
    image = image_of(take)
    if image is None:
        image = bpy.data.images.new(f"{PREFIX} {take.name} {take.job_id[-8:]}", width, height)
        take.preview_image = image.name
    elif tuple(image.size) != (width, height):
        image.scale(width, height)
    image.pixels.foreach_set(rgba.ravel())
    image.update()
    take.preview_step, take.preview_total = preview.step + 1, preview.total
    icon = icons().get(image.name) or icons().new(image.name)
    icon.image_size = width, height
    icon.image_pixels_float.foreach_set(rgba.ravel())


def icons():
    global _icons
    if _icons is None:
        _icons = bpy.utils.previews.new()
    return _icons


def icon_of(take):
    """The custom preview the panel draws for the take, if it has one."""
    return icons().get(take.preview_image) if take.preview_image else None


def remove(take) -> None:
    image = image_of(take)
    if image is not None:
        bpy.data.images.remove(image)
    if take.preview_image in icons():
        del icons()[take.preview_image]
    take.preview_image, take.preview_step, take.preview_total = "", 0, 0


def unregister() -> None:
    global _icons
    if _icons is not None:
        bpy.utils.previews.remove(_icons)
        _icons = None


def shown(shot):
    """The take whose preview the panel shows: the active one, else the newest take with one."""
    takes = shot.takes
    if 0 <= shot.active_take < len(takes) and image_of(takes[shot.active_take]) is not None:
        return takes[shot.active_take]
    return next((take for take in reversed(takes) if image_of(take) is not None), None)
