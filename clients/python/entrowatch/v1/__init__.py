"""Generated wire stubs for entrowatch.v1 (built from proto/, never edited)."""
