"""The words a photo gets (tagan.tagging.keywords): no jargon, person words from faces, a threshold, a broad cap."""

from __future__ import annotations

import numpy as np

from tagan.tagging.faces import Face, face_evidence
from tagan.tagging.keywords import CLOTHING, Keywords, clothing_classes, finish, noise_gate, person_words

RANKED = [("scottish terrier", 0.30), ("placental", 0.20), ("dog", 0.15), ("animal", 0.10), ("leash", 0.05),
          ("mouth harp", 0.01)]  # fmt: skip
JARGON, BROAD = {"placental"}, {"dog", "animal"}


def faces(n: int, score: float = 0.99) -> np.ndarray:
    return face_evidence([Face((0, 0, 10, 10), score, 0.01)] * n)


def test_jargon_goes_broad_words_are_capped_and_the_threshold_is_a_ceiling_not_a_quota() -> None:
    (kept,) = finish(
        [RANKED], top_k=10, keywords=Keywords(min_score=0.02, max_broad=1), jargon=JARGON, broad=BROAD
    )
    assert [w for w, _ in kept] == [
        "scottish terrier",
        "dog",
        "leash",
    ]  # no placental, one broad word, no 1-vote word
    (every,) = finish([RANKED], top_k=10, keywords=Keywords(max_broad=2), jargon=JARGON, broad=BROAD)
    assert [w for w, _ in every] == ["scottish terrier", "dog", "animal", "leash", "mouth harp"]
    (two,) = finish([RANKED], top_k=2, keywords=Keywords(), jargon=JARGON, broad=BROAD)
    assert [w for w, _ in two] == ["scottish terrier", "dog"]
    (none,) = finish(
        [[("static", 0.01), ("window screen", 0.01)]], top_k=10, keywords=Keywords(min_score=0.02)
    )
    assert none == []  # a photo of noise: nothing the method is sure of, nothing written
    spellings = [("dish washer", 0.2), ("Dishwasher", 0.1), ("sea-coast", 0.1), ("seacoast", 0.1), ("日本", 0.1),
                 ("中国", 0.1)]  # fmt: skip
    (once,) = finish([spellings], top_k=10, keywords=Keywords())
    assert [w for w, _ in once] == ["dish washer", "sea-coast", "日本", "中国"]  # one spelling of each word


def test_faces_make_person_words_that_lead_and_are_not_capped() -> None:
    assert person_words(faces(0)) == [] and person_words(None) == []
    assert [w for w, _ in person_words(faces(1))] == ["person"]
    assert [w for w, _ in person_words(faces(4))] == ["person", "people"]
    assert person_words(faces(1, 0.97))[0][1] == np.float32(0.97)
    rules = Keywords(min_score=0.02, max_broad=1)
    broad = BROAD | {"person", "people"}
    (kept,) = finish([RANKED], top_k=4, keywords=rules, jargon=JARGON, broad=broad, evidence=[faces(2)])
    assert [w for w, _ in kept] == ["person", "people", "scottish terrier", "dog"]
    (off,) = finish([RANKED], top_k=4, keywords=Keywords(faces=False), broad=broad, evidence=[faces(2)])
    assert "person" not in [w for w, _ in off]
    (only,) = finish([RANKED], top_k=4, keywords=rules, evidence=[faces(1)], allowed={"dog"})
    assert [w for w, _ in only] == ["dog"]  # --vocab restricts the person words too


def test_clothes_being_worn_make_a_person_where_no_face_was_found() -> None:
    ancestors = [{CLOTHING: 1, "garment.n.01": 0}, {"dog.n.01": 0}, {CLOTHING: 2}]  # jersey, dog, boot
    clothing = np.array([[0.1, 0.8, 0.1], [0.0, 1.0, 0.0]])[:, clothing_classes(ancestors)].sum(axis=1)
    assert np.allclose(clothing, [0.2, 0.0])
    rules = Keywords(min_score=0.02, min_score_faces=0.12, min_worn=0.15)
    back, dog = finish(
        [RANKED] * 2,
        top_k=10,
        keywords=rules,
        jargon=JARGON,
        broad=BROAD,
        evidence=[None, None],
        clothing=clothing,
    )
    assert [w for w, _ in back] == ["person", "scottish terrier", "dog"]  # and the face threshold applies
    assert [w for w, _ in dog] == ["scottish terrier", "dog", "leash"]
    (face,) = finish([RANKED], top_k=2, keywords=rules, evidence=[faces(2)], clothing=clothing[:1])
    assert [w for w, _ in face] == ["person", "people"]  # the detector's words when it found faces
    (off,) = finish([RANKED], top_k=10, keywords=Keywords(), clothing=clothing[:1])
    assert "person" not in [w for w, _ in off]  # min_worn 1: off


def test_a_photo_the_backbone_cannot_read_gets_only_what_the_face_detector_saw() -> None:
    rules = Keywords(max_entropy=4.5, min_active=0.34)
    flat, peaked = np.full(1000, 1e-3), np.eye(1000)[7] * 0.99 + 1e-5
    sparse, dense = (np.arange(100) < 20).astype(float), (np.arange(100) < 60).astype(float)
    # noise: flat and sparse; a forest: flat but dense; a cat close-up: peaked and sparse
    gated = noise_gate(np.stack([sparse, dense, sparse]), np.stack([flat, flat, peaked]), rules)
    assert gated.tolist() == [True, False, False]
    assert not noise_gate(sparse[None], flat[None], Keywords()).any()  # the defaults: no gate
    kept = finish([RANKED] * 3, top_k=10, keywords=rules, gated=gated, evidence=[faces(1), None, None])
    assert [w for w, _ in kept[0]] == ["person"]  # no method words, the face stays
    assert len(kept[1]) == len(kept[2]) == len(RANKED)


def test_the_collection_own_tags_stay_off_photos_unless_asked_but_face_words_stay() -> None:
    ranked = [("icon", 0.2), ("people", 0.1), ("dog", 0.1)]
    collection = {"icon", "people"}  # clip-art tags with no WordNet or ImageNet sense
    off, on = Keywords(collection_words=False), Keywords(collection_words=True)
    (kept,) = finish([ranked], top_k=10, keywords=off, collection=collection, evidence=[faces(2)])
    assert [w for w, _ in kept] == [
        "person",
        "people",
        "dog",
    ]  # "people" from the faces, not from the clip-art
    (kept,) = finish([ranked], top_k=10, keywords=off, collection=collection)
    assert [w for w, _ in kept] == ["dog"]
    (kept,) = finish([ranked], top_k=10, keywords=on, collection=collection)
    assert [w for w, _ in kept] == ["icon", "people", "dog"]


def test_around_people_the_method_words_need_a_higher_score() -> None:
    ranked = [("tripod", 0.2), ("fur coat", 0.05), ("knee pad", 0.02)]
    rules = Keywords(min_score=0.01, min_score_faces=0.1)
    (people, objects) = finish([ranked, ranked], top_k=10, keywords=rules, evidence=[faces(1), None])
    assert [w for w, _ in people] == ["person", "tripod"]  # the gear worn by the person goes
    assert [w for w, _ in objects] == ["tripod", "fur coat", "knee pad"]  # no face: the usual threshold
