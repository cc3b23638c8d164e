"""Sub-commands of `aidsafe`, one module each, wired into engine.cli."""
