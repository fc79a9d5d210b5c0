"""Screens: the main console and the replay (decision tree) view."""
