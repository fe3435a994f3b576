"""Quality: the local checks every generated row passes (filters), the text measures they use, and
near-duplicate detection across a step's rows (dedup)."""
