"""streamguard_pl: Lightning vulnerability detectors for C/C++ functions (transformer, GNN, fusion)."""
__version__ = "0.1.0"
