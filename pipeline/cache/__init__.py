"""Sharded zarr v3 stores of ragged arrays (view audio, layerwise features), extraction and index."""
