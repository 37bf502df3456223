"""cardiotwin.twin."""
