"""sweeplab: experiment sweeps over published papers' models on Ray Tune + Ray Train."""
__version__ = "0.1.0"
