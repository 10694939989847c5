"""tagan: multimodal image tagging with conditional GANs, as a DVC pipeline."""
