"""The tagging models: tag collections, WordNet and the open vocabulary, word vectors, the FAISS index and vote decoding, image features, the tag CGAN tasks and the tagging methods."""
