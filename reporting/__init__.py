"""The monitoring service: an Evidently workspace that follows data/prod_data.csv, served on :8082.

- `reporting.project`: one update (load the CSVs, report, add the run, set the dashboard);
- `reporting.serve`: the container's entry point (update, `evidently ui`, refresher);
- `reporting.refresher`: adds a snapshot whenever the CSVs change.
"""

import os

# No telemetry from Evidently, in this process or in the `evidently ui` it starts.
os.environ.setdefault("DO_NOT_TRACK", "1")
