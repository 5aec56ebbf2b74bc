"""The ground floor: what every other floor may use (seeds, files, names, registries, devices,
metric directions, the background worker and thread budget, progress)."""
