"""Thin routes: validate, call the ML code, shape the reply."""
