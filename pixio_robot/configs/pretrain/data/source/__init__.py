"""Hydra config group: one data source, added with +data/source@data.sources.<name>=<type>."""
