"""Data readers in one place: MNIST, tagged image collections, robust image decoding, XMP."""
