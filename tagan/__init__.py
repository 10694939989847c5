"""tagan: the library behind the pipeline's stages and the CLI (networks, readers, features, embeddings,
tagging and decoding, GAN training, metrics, the params machinery). It never imports a stage or the CLI."""
