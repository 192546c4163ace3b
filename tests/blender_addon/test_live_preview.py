"""Live previews in real Blender, against the live loopback backend with the tiny model."""

from .conftest import run_blender

STEPS = 48  # enough steps that the add-on reads two previews before the tiny model is done


def test_each_take_shows_its_own_changing_preview_until_it_lands(addon_zips, live_backend, tmp_path):
    report = run_blender(
        "live_preview",
        {"zip": str(addon_zips["py311"]), "address": live_backend.address, "settings": {"num_inference_steps": STEPS}},
        tmp_path,
    )
    first, second = report["runs"]
    for run in (first, second):
        assert run["image"], "no preview image appeared while the take ran"
        assert run["pictures"] == 2, "the preview's pixels did not change between steps"
        # The panel draws a preview while the take still has steps to go, and a later one after it. Which
        # step comes first is a race between two processes (steps 1 to 3 on a quiet machine; on a loaded
        # one a newer preview replaces one the add-on has not read yet); the backend's tests pin that
        # previews start at the first step.
        assert 1 <= run["steps"][0] < run["steps"][1] <= STEPS
        assert len(run["sizes"]) == 1 and run["users"] == 0  # never saved with the .blend
        assert ["icon", 10.0] in run["drawn"] and run["icon_matches"]
        assert any(
            kind == "label" and f"preview at step {run['steps'][0]}/{STEPS}" in text for kind, text, *_ in run["drawn"]
        )
        landed = run["after_landing"]
        assert landed["state"] == "imported" and not landed["image_kept"] and not landed["icon_kept"]
        assert landed["preview_image"] == ""
        assert not any(entry[0] == "icon" for entry in landed["drawn"])
    assert second["job_id"] != first["job_id"] and second["image"] != first["image"]
    assert second["others_images"] == []  # the first take's preview went when it landed
    assert report["preview_images_left"] == []
