"""Scoring tagging methods: clip-art tag_eval (scores, tables) and the labelled real-photo set of photo_eval."""
