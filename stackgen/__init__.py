"""What is generated from the settings' declarations (stackconf): `python -m stackgen.generate`."""
