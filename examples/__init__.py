"""Four models of your own with LUT activations, each trained by its own loop and exported in one call (runnable scripts)."""
