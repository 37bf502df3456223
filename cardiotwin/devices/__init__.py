"""cardiotwin.devices."""
