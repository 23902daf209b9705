"""Training scripts for the petct-diffusion cascade (run ``training/train.py``; see docs)."""
