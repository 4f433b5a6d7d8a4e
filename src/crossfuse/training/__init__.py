"""Training: losses, modality dropout, the Lightning module and the fit loop."""
