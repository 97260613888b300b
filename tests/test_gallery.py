"""Gallery import, incremental re-import, and search by person."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from lookalike.errors import ConfigError, GalleryError
from lookalike.gallery import Gallery, GalleryIndex, import_folder
from lookalike.gallery import index as index_module
from lookalike.gallery.store import GalleryPhoto, Person

PEOPLE = {"Tony_Blair": 3, "Serena_Williams": 2, "Colin_Powell": 2, "Halle_Berry": 2}


@pytest.fixture()
def photo_dir(tmp_path, fixtures_dir):
    """A folder-per-person source made of links to the fixture photos."""
    src = tmp_path / "src"
    for person, n in PEOPLE.items():
        (src / person).mkdir(parents=True)
        for f in sorted((fixtures_dir / "faces" / person).iterdir())[:n]:
            (src / person / f.name).symlink_to(f)
    (src / "people.csv").write_text("id,name,category\nHalle_Berry,Halle Berry,bad\n"
                                    "Tony_Blair,The Prime Minister,good\n")
    return src


def test_import_then_reimport_only_what_changed(photo_dir, tmp_path, fixtures_dir):
    gdir = tmp_path / "gallery"
    report = import_folder(photo_dir, gdir, workers=1)
    assert (report.added, report.unchanged, report.removed, report.failed) == (9, 0, 0, [])
    g = Gallery.load(gdir)
    assert g.people["Halle_Berry"].category == "bad"
    assert g.people["Tony_Blair"].name == "The Prime Minister"
    assert g.people["Colin_Powell"].name == "Colin Powell"
    assert g.embeddings.shape == (9, 128)
    np.testing.assert_allclose(np.linalg.norm(g.embeddings, axis=1), 1.0, atol=1e-5)
    assert g.landmarks.shape == (9, 68, 2)
    assert all((gdir / p.crop).is_file() for p in g.photos)

    again = import_folder(photo_dir, gdir, workers=1)
    assert (again.added, again.unchanged, again.removed) == (0, 9, 0)

    # one photo gone, one added, one no-face photo that must be listed and not be fatal
    victim = sorted((photo_dir / "Tony_Blair").iterdir())[0]
    victim_crop = next(p.crop for p in g.photos if p.source.endswith(victim.name) and p.person_id == "Tony_Blair")
    victim.unlink()
    (photo_dir / "Serena_Williams" / "extra.jpg").symlink_to(fixtures_dir / "faces" / "Serena_Williams" / "4.jpg")
    shutil.copy(fixtures_dir / "noface" / "6.jpg", photo_dir / "Serena_Williams" / "landscape.jpg")
    third = import_folder(photo_dir, gdir, workers=1)
    assert (third.added, third.unchanged, third.removed) == (1, 8, 1)
    assert [(f["source"], f["code"]) for f in third.failed] == [("Serena_Williams/landscape.jpg", "no_face")]
    g = Gallery.load(gdir)
    assert len(g) == 9 and g.embeddings.shape == (9, 128)
    assert not (gdir / victim_crop).exists()
    assert [f["source"] for f in g.failed] == ["Serena_Williams/landscape.jpg"]


def test_metadata_with_a_wrong_category_is_refused_by_name(photo_dir, tmp_path):
    meta = tmp_path / "meta.csv"
    meta.write_text("id,name,category\nTony_Blair,Tony,ugly\n")
    with pytest.raises(ConfigError, match="ugly"):
        import_folder(photo_dir, tmp_path / "g", metadata=meta, workers=1)
    assert not (tmp_path / "g" / "gallery.json").exists()


def test_search_ranks_people_by_their_best_photo(photo_dir, tmp_path, fixtures_dir):
    from lookalike.faces import analyze_face
    from lookalike.imaging import load_image

    gdir = tmp_path / "gallery"
    import_folder(photo_dir, gdir, workers=1)
    g = Gallery.load(gdir)
    index = GalleryIndex(g, same_person_distance=0.42)
    probe = analyze_face(load_image(fixtures_dir / "faces" / "Tony_Blair" / "4.jpg").rgb)
    found = index.search(probe.embedding, k=4)
    ids = [m.person_id for m in found.matches]
    assert ids[0] == "Tony_Blair"
    assert len(ids) == len(set(ids)) == 4  # distinct people
    sims = [m.similarity for m in found.matches]
    assert sims == sorted(sims, reverse=True) and all(0 <= s <= 1 for s in sims)
    assert sims[0] > 0.5 > sims[1]  # same person above the model threshold, strangers below
    best_row = max(g.photos_of("Tony_Blair"), key=lambda i: float(g.embeddings[i] @ probe.embedding))
    assert found.matches[0].photo == best_row
    assert found.good_news.person_id == "Tony_Blair"
    assert found.bad_news.person_id == "Halle_Berry" and found.bad_news.category == "bad"
    with pytest.raises(GalleryError, match="re-embed"):
        index.search(probe.embedding, k=3, model="onnx:other")


def _synthetic_gallery(tmp_path, n_people=400, per_person=3, dim=64, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_people, dim))
    emb = np.repeat(centres, per_person, axis=0) + 0.35 * rng.normal(size=(n_people * per_person, dim))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    g = Gallery(root=tmp_path, model="synthetic")
    for p in range(n_people):
        g.people[f"p{p}"] = Person(id=f"p{p}", name=f"P {p}", category="bad" if p % 10 == 0 else "good")
    g.photos = [GalleryPhoto(person_id=f"p{i // per_person}", source="", sha1="", crop="")
                for i in range(len(emb))]
    g.embeddings = emb.astype(np.float32)
    g.landmarks = np.zeros((len(emb), 68, 2), np.float32)
    return g, centres / np.linalg.norm(centres, axis=1, keepdims=True)


def test_hnsw_index_agrees_with_exact_search(tmp_path, monkeypatch):
    g, centres = _synthetic_gallery(tmp_path)
    exact = GalleryIndex(g, 0.42)
    monkeypatch.setattr(index_module, "HNSW_FROM", 100)
    approx = GalleryIndex(g, 0.42)
    assert "HNSW" in type(approx._all.index).__name__
    agree = 0
    for c in centres[:100]:
        a = exact.search(c, k=5)
        b = approx.search(c, k=5)
        agree += a.matches[0].person_id == b.matches[0].person_id
        assert a.bad_news.category == "bad"
    assert agree >= 97


def test_top_k_widens_until_k_distinct_people(tmp_path):
    g, centres = _synthetic_gallery(tmp_path, n_people=50, per_person=20)
    found = GalleryIndex(g, 0.42).search(centres[3], k=30)
    assert len({m.person_id for m in found.matches}) == 30


def test_empty_or_missing_gallery_is_a_named_error(tmp_path):
    with pytest.raises(GalleryError, match="lookalike gallery import"):
        Gallery.load(tmp_path / "nowhere")
    with pytest.raises(GalleryError, match="no photos"):
        GalleryIndex(Gallery(root=tmp_path), 0.42)
