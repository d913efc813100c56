"""Training of learned codecs (shared by pixel and, later, feature codecs)."""
