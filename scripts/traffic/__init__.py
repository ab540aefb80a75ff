"""Production traffic simulator: unseen pictures or sounds, then drifted ones, against a running
stack."""
