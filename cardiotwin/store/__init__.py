"""cardiotwin.store."""
