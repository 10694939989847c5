"""The DVC stages of tagan: one thin module per stage (Params, run, main); dvc.yaml runs them.

STAGES is the stage registry: every params.yaml section and the Params class that validates it.
`python -m pipeline` checks the whole params.yaml against it.
"""

STAGES: dict[str, str] = {
    "runtime": "tagan.config:Runtime",
    "mnist_data": "pipeline.mnist_data:Params",
    "mnist_classifier": "pipeline.mnist_classifier:Params",
    "mnist_cgan.paper": "pipeline.mnist_cgan:Params",
    "mnist_cgan.strong": "pipeline.mnist_cgan:Params",
    "dcgan": "pipeline.dcgan:Params",
    "tags_data": "pipeline.tags_data:Params",
    "image_features": "pipeline.image_features:Params",
    "vocabulary": "pipeline.vocabulary:Params",
    "tag_embeddings": "pipeline.tag_embeddings:Params",
    "tag_cgan.paper": "pipeline.tag_cgan:Params",
    "tag_cgan.strong": "pipeline.tag_cgan:Params",
    "open_cgan": "pipeline.open_cgan:Params",
    "tag_eval": "pipeline.tag_eval:Params",
    "photo_eval": "pipeline.photo_eval:Params",
}
