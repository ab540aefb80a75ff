"""The Streamlit page (webapp/app.py) and its helpers; a package so that `webapp.*` imports work."""
