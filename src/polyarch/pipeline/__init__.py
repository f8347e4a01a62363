"""Turning solved build plans into images and writing them to outputs (store, archives, directories, registry)."""
