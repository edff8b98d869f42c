"""Strategies: see strategies/base.py."""
