"""Production traffic simulator: unseen images, then drifted ones, against a running stack."""
