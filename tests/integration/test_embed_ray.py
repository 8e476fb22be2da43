"""The Ray Data embedding engine writes the local engine's vectors, resumably, on a local Ray instance."""
from __future__ import annotations

import json

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="ray is not installed: pip install 'quorum[ray]' to test the ray engine")
pytest.importorskip("ray.data", reason="Ray Data is not installed: pip install 'ray[data]'")

from labeling.data.demo import write_images  # noqa: E402
from labeling.data.importer import import_folder  # noqa: E402
from labeling.embed.pipeline import embed_project, load_vectors  # noqa: E402
from labeling.project import Project  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Ray Data's own configuration notices


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, object_store_memory=100 * 2**20, include_dashboard=False, log_to_driver=False,
             ignore_reinit_error=True)
    yield ray
    ray.shutdown()


def _project(root, n):
    write_images(root / "images", limit=n)
    project = Project(root, create=True)
    import_folder(project, root / "images", progress=False)
    return project


def _by_uri(project):
    pv = load_vectors(project)
    return dict(zip(pv.uris, pv.vectors))


def test_ray_engine_matches_local_engine_and_resumes(tmp_path, local_ray, capsys):
    from labeling.cli import main
    from labeling.embed.ray_engine import embed_project_ray

    local = _project(tmp_path / "local", 30)
    embed_project(local, device="cpu", progress=False)
    remote = _project(tmp_path / "remote", 30)
    out = embed_project_ray(remote, device="cpu", batch_size=8, progress=False)
    assert out["engine"] == "ray" and out["embedded"] == 30 and out["failed"] == 0 and out["already"] == 0

    want, got = _by_uri(local), _by_uri(remote)
    assert set(got) == set(want) and len(got) == 30
    for uri, v in want.items():
        np.testing.assert_allclose(got[uri], v, rtol=1e-4, atol=1e-4)
    assert local.setting("vector_key") == remote.setting("vector_key")
    assert remote.setting("vector_dim") == local.setting("vector_dim")

    # Resumable: a second run (here through the CLI) embeds nothing; new images only are embedded.
    assert main(["embed", str(remote.root), "--engine", "ray", "--quiet", "--format", "json"]) == 0
    again = json.loads(capsys.readouterr().out)["result"]
    assert (again["embedded"], again["already"]) == (0, 30)
    write_images(remote.root / "more", limit=40, seed=1)
    import_folder(remote, remote.root / "more", progress=False)
    more = embed_project_ray(remote, device="cpu", batch_size=16, progress=False)
    assert more["already"] == 30 and more["embedded"] == more["total"] - 30 > 0
    assert len(load_vectors(remote).item_ids) == more["total"]


def test_unreadable_files_are_marked_like_the_local_engine(tmp_path, local_ray):
    from labeling.embed.ray_engine import embed_project_ray
    from storage import items as items_q

    project = _project(tmp_path / "p", 6)
    with project.db.session() as con:
        ids, uris = items_q.ok_items(con)
    project.resolve_uri(uris[0]).write_bytes(b"not an image any more")
    out = embed_project_ray(project, device="cpu", progress=False)
    assert (out["embedded"], out["failed"]) == (5, 1)
    with project.db.session() as con:
        ok_ids, _ = items_q.ok_items(con)
    assert int(ids[0]) not in set(ok_ids.tolist())


def test_local_engine_rejects_ray_options(tmp_path, capsys):
    from labeling.cli import main

    project = _project(tmp_path / "p", 2)
    assert main(["embed", str(project.root), "--address", "ray://nowhere:10001"]) == 2
    assert "--engine ray" in capsys.readouterr().err
