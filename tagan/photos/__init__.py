"""The user's photos: what `tagan tag` / `tagan untag` do to a folder (discovery, session, sidecars, review sheet)."""
