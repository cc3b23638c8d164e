"""Small helpers shared by every package: errors, hashing, paths, the named
registry, progress bars, atomic writes, lazy exports. No DSPy import."""
