"""The user's photos: what `tagan tag` / `tagan untag` do to a library (discovery, session, records, sidecars, ledger, review sheet)."""
